"""A real third-party backend distribution, written into a directory for sys.path / PYTHONPATH.

It is what `pip install` leaves in site-packages: a package and a `.dist-info` whose
entry_points.txt names the declaration in the `dwkit.backends` group. The backend itself is
transformers under another name (a subclass of the hf backend), so its transcripts are
known; what the tests prove is that nothing in dwkit names it, yet every command finds it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PLUGIN = "hfplugin"
PACKAGE = "dwkit_hfplugin"

_MODULE = '''
"""A dwkit backend plugin: transformers, declared outside dwkit."""

from dwkit.runtimes.declaration import BackendSpec
from dwkit.runtimes.hf import HFBackend


class PluginBackend(HFBackend):
    name = "{name}"


BACKEND = BackendSpec(
    name="{name}",
    summary="test plugin: transformers under another name",
    backend_class=PluginBackend,
    formats=("hf",),
    extra="hf",
    precisions=("fp32",),
    default_precision="fp32",
    probe=lambda device: None,
    requires=("torch", "transformers"),
    auto_rank=-10,
    bench_precision="fp32",
)
'''


def write_plugin(root: Path, name: str = PLUGIN, target: str | None = None) -> Path:
    """Write the plugin under `root` (a sys.path entry) and return `root`.

    `target` overrides the entry point's value, e.g. to point at a module that does not exist.
    """
    root.mkdir(parents=True, exist_ok=True)
    package = root / PACKAGE
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(_MODULE.format(name=name))
    dist = root / f"{PACKAGE}-0.1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [dwkit.backends]
            {name} = {target or f"{PACKAGE}:BACKEND"}
            """
        )
    )
    return root
