"""The network of sandboxes with a NetworkPolicy, on the host side: the allowlist matcher
(rules), the egress proxy (proxy, http) and its service (egress), credential injection
(inject) with TLS ended by a CA of each sandbox's own (tls), ports exposed on the host
(expose), and sockets made in other network namespaces (netns). Optional libraries (pyroute2
for the transparent mode, cryptography for TLS termination) are imported here alone, lazily,
with an install hint."""
