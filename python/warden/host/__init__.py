"""Linux mechanisms on the host: cgroups (v1 and v2 drivers), the sandbox's environment and its
own host identity, this process's descriptor budget, the seccomp profile for Docker, ``owner``
(which warden process owns what it left on the host), and ``doctor``, what this host supports.
Never imports providers or anything above them."""
