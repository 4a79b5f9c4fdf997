"""`python -m cifarlab.tools.offline_plots`: pages from `dvc plots show` and `dvc plots diff` that need no network.

DVC's pages load Vega, Vega-Lite and vega-embed from a CDN, so without the network they stay blank. This
writes an HTML template with those libraries inlined (the bundle that vl-convert ships inside its wheel)
and points this checkout's DVC at it with `dvc config --local plots.html_template`, which only this clone
reads. Run it once per clone, from the repository root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vl_convert

from cifarlab.errors import CifarlabError
from cifarlab.io import write_text

TEMPLATE = Path("plots") / "offline.html"  # relative to .dvc/, where DVC resolves plots.html_template

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots</title>
    <!-- vega-embed {embed}, Vega {vega} and Vega-Lite, inlined: this page loads nothing from the network -->
    <script type="text/javascript">
(function () {{
BUNDLE
}})();
    </script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_page() -> str:
    """DVC's page template with the plotting libraries inlined; {plot_divs} and {refresh_tag} are DVC's."""
    bundle = vl_convert.javascript_bundle()  # sets window.vegaEmbed, window.vega and window.vegaLite
    if "</script" in bundle.lower():
        raise CifarlabError("the vl-convert bundle contains '</script' and cannot be inlined in a page")
    page = PAGE.format(embed=vl_convert.get_vega_embed_version(), vega=vl_convert.get_vega_version(),
                       refresh_tag="{refresh_tag}", plot_divs="{plot_divs}")
    # The function scope keeps the bundle's top-level names from clashing with the `spec` of DVC's scripts.
    return page.replace("BUNDLE", bundle)


def install(repo: Path) -> Path:
    """Write the template into `repo`'s .dvc folder and make it this clone's plots.html_template."""
    dvc_dir = repo / ".dvc"
    if not dvc_dir.is_dir():
        raise CifarlabError(f"{repo}: not a DVC repository (no .dvc folder); run this from the project root")
    path = dvc_dir / TEMPLATE
    write_text(path, offline_page())
    configured = subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template",
                                 TEMPLATE.as_posix()], cwd=repo, capture_output=True, text=True)
    if configured.returncode != 0:
        reason = (configured.stderr.strip().splitlines() or ["no message"])[-1]
        raise CifarlabError(f"{repo / '.dvc' / 'config.local'}: could not set plots.html_template ({reason})")
    return path


def main() -> None:
    try:
        path = install(Path.cwd())
    except CifarlabError as exc:  # a user error, as in every stage: one line, exit status 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"offline plots: {path} ({path.stat().st_size / 1e6:.1f} MB) is this clone's plots.html_template; "
          "`dvc plots show` and `dvc plots diff` now need no network")


if __name__ == "__main__":
    main()
