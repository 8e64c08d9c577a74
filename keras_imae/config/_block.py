"""The settings block a run prints at its start (and ``recommended()`` prints)."""

__all__ = ["RUN_SETTINGS_TITLE", "format_resolved"]


def _fmt(value):
    if isinstance(value, list) and value and isinstance(value[0], list):
        return f"[{len(value)} x {len(value[0])} matrix, in config.json]"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


RUN_SETTINGS_TITLE = "Settings (* = default; written to config.json under 'resolved'):"


def format_resolved(resolved, defaulted=(), *, title=RUN_SETTINGS_TITLE):
    """The block a run prints at its start: ``title``, then one line per setting, ``*`` for
    a default."""
    lines = [title]
    for key, value in resolved.items():
        mark = "*" if key in defaulted else " "
        lines.append(f"  {mark} {key:<15} {_fmt(value)}")
    return "\n".join(lines)
