"""
The bundles' configs, rendered from one set of recipe sources.

``recipes/`` holds Jinja2 templates of the configs (``segmentation/``: train, evaluate and inference of the three
segmentation bundles; ``common/``: what every bundle shares) and, in ``recipes/bundles/NAME.yaml``, each bundle's
own choices: which template makes which config file and the settings that differ. Rendering writes complete,
commented configs into ``bundles/NAME/configs/``, so every bundle stays self-contained for ``python -m
monai.bundle run``, MONAI Label and ``monai.bundle download``, while every shared line exists once.
:func:`render_configs` with ``check=True`` lists the configs that differ from their sources (CI fails on it).
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["render_configs"]

COMMENT_COLUMN = 54  # where the configs' end-of-line comments start (one further on indented lines)


def _raw(value) -> str:
    """A setting as it appears in YAML: strings verbatim (``$`` expressions, ``2.0e-4``), the rest in flow style."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("...\n").strip()


def _line(text: str, why: str | None = None, indent: int = 0) -> str:
    """``text`` with ``# why`` at the configs' comment column (``indent``: the line's indentation in the template)."""
    if not why:
        return text
    width = COMMENT_COLUMN + (1 if indent else 0) - indent
    return f"{text.ljust(width)}# {why}" if len(text) < width - 1 else f"{text}  # {why}"


def _recording_loader(recipes: Path):
    """A loader of the templates under ``recipes`` that keeps the name of every template it loads, in order."""
    import jinja2  # a development tool: only rendering needs it

    class RecordingLoader(jinja2.FileSystemLoader):
        def __init__(self, searchpath: str):
            super().__init__(searchpath)
            self.loaded: list[str] = []

        def get_source(self, environment, template):
            if template not in self.loaded:
                self.loaded.append(template)
            return super().get_source(environment, template)

    return RecordingLoader(str(recipes))


def _environment(recipes: Path, settings: dict):
    import jinja2

    env = jinja2.Environment(
        loader=_recording_loader(recipes),
        cache_size=0,  # every template is loaded anew, so the loader sees all the sources of each config
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def setting(name: str, indent: int = 0) -> str:
        if name not in settings:
            raise KeyError(f"setting {name!r} is not in the bundle's recipe file")
        spec = settings[name] if isinstance(settings[name], dict) else {"value": settings[name]}
        return _line(f"{name}: {_raw(spec['value'])}", spec.get("why"), indent)

    def value(name: str) -> str:
        spec = settings[name] if isinstance(settings[name], dict) else {"value": settings[name]}
        return _raw(spec["value"])

    env.globals.update(line=_line, setting=setting, value=value)
    return env


def _header(templates: list[str], recipe: str) -> str:
    """The config's first lines: every source it was read from (the template, every template that one extends,
    includes or imports, and the bundle's recipe), and how to change it."""
    sources = "".join(f"#   recipes/{name}\n" for name in [*templates, f"bundles/{recipe}"])
    return (
        "# Rendered from these sources: edit those, then run `xlstm-monai render-configs` (CI fails when a config and\n"
        f"# its sources differ).\n{sources}"
    )


def render_configs(
    recipes_dir: str | Path = "recipes",
    bundles_dir: str | Path = "bundles",
    names: list[str] | None = None,
    check: bool = False,
) -> list[str]:
    """
    Render every bundle's configs from ``recipes_dir`` into ``bundles_dir`` (or only compare, with ``check``).
    Returns the configs that differed from their sources (with ``check``) or were rewritten.
    """
    recipes = Path(recipes_dir)
    changed = []
    for recipe in sorted((recipes / "bundles").glob("*.yaml")):
        name = recipe.stem
        if names and name not in names:
            continue
        spec = yaml.safe_load(recipe.read_text())
        env = _environment(recipes, spec.get("settings", {}))
        for config, template in spec["configs"].items():
            values = {k: v for k, v in spec.items() if k not in ("configs", "settings")}
            env.loader.loaded.clear()
            body = env.get_template(template).render(bundle=name, **values)
            text = _header(env.loader.loaded, recipe.name) + body
            target = Path(bundles_dir) / name / "configs" / config
            if target.is_file() and target.read_text() == text:
                continue
            changed.append(str(target))
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    return changed
