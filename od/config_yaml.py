"""Reading a YAML pipeline config file (od.config layers them): strict where PyYAML is lenient.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word (a second ``train:``
section drops every key of the first), reads an empty file as nothing, and reports errors over
several lines about ``<unicode string>``. :func:`read_yaml` refuses each, in one line naming the
file, the line and the fix.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from od.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently: a second ``train:`` section would drop every key of the first)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (first on line {seen[key] + 1}); "
                "keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path) -> dict:
    """The mapping in a YAML pipeline config. Raises ConfigError naming ``path`` (and the line)
    for an unreadable or non-UTF-8 file, invalid YAML (tabs), a key given twice, or a file
    that sets nothing (empty or only comments: probably not the file meant)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read pipeline config {path}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: "
                          f"{e.object[e.start:e.start + 4]!r}); save the pipeline config as "
                          "UTF-8.") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        lines = text.splitlines()
        line = lines[mark.line][:mark.column + 1] if mark and mark.line < len(lines) else ""
        tabs = " YAML indents with spaces, not tabs." if "\t" in problem + line else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}.{tabs}") from None
    if data is None:
        raise ConfigError(f"{path}: the pipeline config is empty (no sections); give a config "
                          "such as configs/retinanet_mobilenetv2_fpn_256.yaml, or leave --config "
                          "out for the defaults.")
    return data
