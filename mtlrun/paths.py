"""Where the packaged Hydra configs live, for a source checkout, an editable or a wheel install."""

from pathlib import Path


def config_dir() -> str:
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):  # wheel install, then source tree
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"mtlrun's conf/ directory was not found next to {here}")
