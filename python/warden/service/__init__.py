"""warden serve: sandboxes over HTTP for many tenants (the extra ``warden[server]``).

keys (API keys stored as salted scrypt hashes in SQLite), config (per-tenant quotas),
registry (the live sandboxes, by tenant), app (the Starlette application and its routes),
server (uvicorn around it). Sandboxes live in the server's process and die with it.
Starlette, uvicorn and prometheus_client are imported here alone, lazily, with an install
hint when missing."""
