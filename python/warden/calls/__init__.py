"""Policy around a call into a sandbox: the middleware pipeline (rate limits, retry), and the
metrics recorder it reports to."""
