"""Linux mechanisms on the host: cgroups (v1 and v2 drivers), the sandbox's environment, this
process's descriptor budget, the seccomp profile for Docker, and ``doctor``, what this host supports. Never imports providers
or anything above them."""
