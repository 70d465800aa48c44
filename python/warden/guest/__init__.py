"""Code that runs inside a sandbox: the worker loop, the tool operations (commands, files,
functions) and the program that starts the worker inside a container. Imports only
warden.wire and warden.errors: it runs under every sandbox's Python, sometimes another
Python in a container."""
