"""The evidence lines: one module (or one folder, for a line with private helpers) per line,
named after the line. Each declares itself with :func:`forensics.core.registry.register`;
:func:`forensics.core.registry.discover_lines` imports every module under this package.
``docs/lines.md`` lists them (generated from the registry)."""
