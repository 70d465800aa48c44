"""What applications hold: ``run()`` for one command, ``Sandbox`` for a long-lived sandbox.
Uses providers only through ``providers.base`` and the registry."""
