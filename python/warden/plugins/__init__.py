"""Plugin bundles: plugin.yaml (the manifest, read with a safe YAML loader), the operator's
ceilings on what a manifest may ask for, the load-time scan, and the Engine and Plugin that
serve calls from pools of warm sandboxed workers."""
