"""The host<->guest protocol: frames of msgpack with request ids, their codec and channel,
large payloads beside a frame, and the one rule that keeps a path inside its area. Imports
only warden.errors (and ``_core`` to wait on a socket), so that it runs inside every sandbox."""
