"""Where an exported model lives: a local folder, or a Hugging Face Hub repository named user/name.

huggingface_hub is the optional extra `dfc_vae[hub]` and is imported only on the path of a Hub id,
so a local folder never needs it. Every failure on that path (the extra missing, no network, an
unknown repository) is one UserError saying what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

from dfc_vae.util.errors import UserError

INSTALL_HINT = 'pip install "dfc_vae[hub]"'
# user/name as the Hub spells repository ids: letters, digits, '-', '_', '.'
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(text: str) -> bool:
    """Whether `text` names a Hub repository (user/name) rather than a local folder: it has that shape
    and no such path exists here (a local folder always wins)."""
    return bool(_HUB_ID.match(str(text))) and not Path(text).expanduser().exists()


def _hub(what: str):
    """The huggingface_hub module, or a UserError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise UserError(f"{what} needs huggingface_hub; install it with {INSTALL_HINT}, or download the "
                        "model's folder and pass its path") from None
    return huggingface_hub


def resolve_model(dir_or_id: str | Path, flag: str = "--model") -> tuple[Path, str]:
    """A local folder as it is, or a Hub id downloaded (or found in the Hub's cache) -> (folder, the name
    a caption gives it: the id, or the folder's name)."""
    text = str(dir_or_id)
    if not is_hub_id(text):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UserError(f"{flag} {text} is neither a folder nor a Hub id (user/name); pass a folder made by "
                            "`dfc-vae export` or a Hub repository id")
        return path, path.resolve().name
    hub = _hub(f"{flag} {text} (no such folder here, so a Hugging Face Hub id)")
    try:
        folder = hub.snapshot_download(repo_id=text)
    except Exception as e:  # offline, unknown repository, no access: the Hub's own exception types vary by version
        raise UserError(f"cannot fetch {text} from the Hugging Face Hub ({type(e).__name__}); check the id and "
                        "the network, or download the model's folder and pass its path") from None
    return Path(folder), text


def push_folder(folder: str | Path, repo_id: str) -> str:
    """Upload an exported folder to the Hub repository `repo_id` (made if missing); returns its URL.
    Needs the network and a token (`huggingface-cli login` or HF_TOKEN)."""
    if not _HUB_ID.match(repo_id):
        raise UserError(f"--push-to-hub {repo_id!r} is not a Hub repository id; give it as user/name")
    hub = _hub("--push-to-hub")
    try:
        api = hub.HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="dfc-vae export",
                          ignore_patterns=[".*"])  # no lock or temporary files
    except Exception as e:  # as above: no network, no token, no rights
        raise UserError(f"uploading {folder} to {repo_id} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "log in with `huggingface-cli login` and check the network, or upload the folder by hand") from None
    return f"https://huggingface.co/{repo_id}"
