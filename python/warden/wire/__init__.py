"""The host<->guest protocol: frames of msgpack with request ids (``codec``), the op names
(``ops``), replies and errors as fields (``replies``), the channel over a socket
(``channel``), large payloads beside a frame (``large``), and the one rule that keeps a path
inside its area (``paths``). Imports only warden.errors (and ``_core`` to wait on a socket),
so that it runs inside every sandbox."""
