"""Linux mechanisms on the host: cgroups (v1 and v2 drivers), the sandbox's environment, the
seccomp profile for Docker, ``owner`` (which warden process owns what it left on the host), and
``doctor``, what this host supports. Never imports providers or anything above them."""
