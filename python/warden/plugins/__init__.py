"""Plugin bundles: plugin.yaml (the manifest, read with a safe YAML loader), the load-time
scan, and the Engine and Plugin that serve calls from pools of warm sandboxed workers."""
