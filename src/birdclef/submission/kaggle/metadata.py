"""Kaggle metadata: the checks ``kaggle datasets create`` and ``kaggle kernels push`` make.

:func:`validate_dataset_metadata` and :func:`validate_kernel_metadata` raise
:class:`KaggleMetadataError` naming every problem and return the warnings; :func:`slugify` is how
Kaggle turns a title into an id.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from birdclef.errors import BirdclefError

# Licence names the kaggle CLI's dataset metadata documents (another is a warning: Kaggle adds some).
KNOWN_DATASET_LICENSES = {
    "CC0-1.0", "CC-BY-SA-4.0", "GPL-2.0", "ODbL-1.0", "CC-BY-NC-SA-4.0", "unknown", "DbCL-1.0",
    "CC-BY-SA-3.0", "copyright-authors", "other", "reddit-api", "world-bank",
}


class KaggleMetadataError(BirdclefError, ValueError):
    """A dataset-metadata.json or kernel-metadata.json the ``kaggle`` CLI would refuse."""


def slugify(text: str) -> str:
    """'BirdCLEF demo submission' → 'birdclef-demo-submission' (how Kaggle turns titles into ids)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _check_ref(ref: Any, what: str, parts: int, problems: list[str]) -> list[str]:
    if not isinstance(ref, str) or ref.count("/") != parts - 1 or not all(ref.split("/")):
        problems.append(f"{what} {ref!r} must look like '{'/'.join(['{owner}', '{slug}', '{…}'][:parts])}'")
        return []
    return ref.split("/")


def _check_bools(meta: dict, keys: Iterable[str], problems: list[str]) -> None:
    for key in keys:
        if key in meta and not (isinstance(meta[key], bool) or str(meta[key]).lower() in ("true", "false")):
            problems.append(f"{key} must be true or false, got {meta[key]!r}")


def _raise_if(problems: list[str], name: str) -> None:
    if problems:
        raise KaggleMetadataError(f"{name}: " + "; ".join(problems))


def validate_dataset_metadata(meta: dict) -> list[str]:
    """Check a dataset-metadata.json as ``kaggle datasets create`` does → warnings.

    Raises :class:`KaggleMetadataError` naming every problem: id not ``owner/slug``, slug or title
    outside 6–50 characters, template placeholders, not exactly one licence with a name, a subtitle
    outside 20–80 characters.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(meta, dict):
        raise KaggleMetadataError(f"dataset-metadata.json must hold an object, not {type(meta).__name__}")
    owner_slug = _check_ref(meta.get("id"), "id", 2, problems)
    if owner_slug:
        slug = owner_slug[1]
        if "INSERT" in meta["id"]:
            problems.append("id still holds the template placeholder")
        elif not 6 <= len(slug) <= 50:
            problems.append(f"dataset slug {slug!r} must be 6-50 characters")
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", slug):
            problems.append(f"dataset slug {slug!r} may hold only letters, digits and hyphens")
    title = meta.get("title")
    if not isinstance(title, str) or "INSERT_TITLE_HERE" in title:
        problems.append("title is missing or still the template placeholder")
    elif not 6 <= len(title) <= 50:
        problems.append(f"title {title!r} must be 6-50 characters, not {len(title)}")
    licenses = meta.get("licenses")
    if not isinstance(licenses, list) or len(licenses) != 1:
        problems.append("licenses must list exactly one licence, e.g. [{\"name\": \"CC0-1.0\"}]")
    elif not isinstance(licenses[0], dict) or not licenses[0].get("name"):
        problems.append("the licence needs a name")
    elif licenses[0]["name"] not in KNOWN_DATASET_LICENSES:
        warnings.append(f"licence {licenses[0]['name']!r} is not one Kaggle is known to accept")
    subtitle = meta.get("subtitle")
    if subtitle is not None and not (isinstance(subtitle, str) and 20 <= len(subtitle) <= 80):
        problems.append("subtitle, when given, must be 20-80 characters")
    if "keywords" in meta and not (isinstance(meta["keywords"], list) and all(isinstance(k, str) for k in meta["keywords"])):
        problems.append("keywords must be a list of strings")
    _raise_if(problems, "dataset-metadata.json")
    return warnings


def validate_kernel_metadata(meta: dict, *, folder: str | Path | None = None, submission: bool = True) -> list[str]:
    """Check a kernel-metadata.json as ``kaggle kernels push`` does → warnings.

    Raises :class:`KaggleMetadataError` naming every problem: id not ``owner/slug`` (slug ≥ 5
    characters), title under 5 characters, no code_file (or, with ``folder``, no such notebook),
    language not python/r/rmarkdown, kernel_type not script/notebook, malformed sources or
    booleans. With ``submission`` (a code-competition entry) internet must be off and a
    competition source given. A title that does not slugify to the id is a warning, as in the CLI.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(meta, dict):
        raise KaggleMetadataError(f"kernel-metadata.json must hold an object, not {type(meta).__name__}")
    kernel_slug = None
    if "id" in meta or "id_no" not in meta:
        parts = _check_ref(meta.get("id"), "id", 2, problems)
        if parts:
            kernel_slug = parts[1]
            if "INSERT" in meta["id"]:
                problems.append("id still holds the template placeholder")
            elif len(kernel_slug) < 5:
                problems.append(f"kernel slug {kernel_slug!r} must be at least five characters")
            elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", kernel_slug):
                problems.append(f"kernel slug {kernel_slug!r} may hold only letters, digits and hyphens")
    title = meta.get("title")
    if title is not None and (not isinstance(title, str) or len(title) < 5):
        problems.append("title must be at least five characters")
    elif title and kernel_slug and slugify(title) != kernel_slug.lower():
        warnings.append(f"title {title!r} does not resolve to the id's slug {kernel_slug!r}")
    code_file = meta.get("code_file")
    if not code_file or not isinstance(code_file, str):
        problems.append("code_file (the notebook or script to push) must be given")
    elif folder is not None:
        path = Path(folder) / code_file
        if not path.is_file():
            problems.append(f"code_file {code_file!r} not found in {folder}")
        elif meta.get("kernel_type") == "notebook":
            try:
                if "cells" not in json.loads(path.read_text()):
                    problems.append(f"{code_file} is not a notebook (no cells)")
            except (ValueError, UnicodeDecodeError):
                problems.append(f"{code_file} is not valid notebook JSON")
    if meta.get("language") not in ("python", "r", "rmarkdown"):
        problems.append(f"language must be python, r or rmarkdown, not {meta.get('language')!r}")
    if meta.get("kernel_type") not in ("script", "notebook"):
        problems.append(f"kernel_type must be script or notebook, not {meta.get('kernel_type')!r}")
    _check_bools(meta, ("is_private", "enable_gpu", "enable_tpu", "enable_internet"), problems)
    for key in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(s, str) and s for s in meta[key])):
            problems.append(f"{key} must be a list of non-empty strings")
    for source in meta.get("dataset_sources") or []:
        if isinstance(source, str) and not (2 <= len(source.split("/")) <= 3 and all(source.split("/"))):
            problems.append(f"dataset source {source!r} must look like 'owner/slug' or 'owner/slug/version'")
    for source in meta.get("kernel_sources") or []:
        parts = _check_ref(source, "kernel source", 2, problems)
        if parts and len(parts[1]) < 5:
            problems.append(f"kernel source {source!r}: slug must be at least five characters")
    for source in meta.get("competition_sources") or []:
        if isinstance(source, str) and "/" in source:
            problems.append(f"competition source {source!r} must be a bare slug such as 'birdclef-2025'")
    for source in meta.get("model_sources") or []:
        if isinstance(source, str):
            parts = source.split("/")
            if len(parts) < 2 or not all(parts):
                problems.append(f"model source {source!r} must look like 'owner/model/framework/variation/version'")
            elif len(parts) != 5 or not parts[4].isdigit():
                warnings.append(f"model source {source!r} names no single version (owner/model/framework/variation/N)")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in ("original", "latest"):
        problems.append("docker_image_pinning_type must be 'original' or 'latest'")
    if submission:
        if str(meta.get("enable_internet", True)).lower() != "false":
            problems.append("a code-competition submission must set enable_internet to false")
        if not meta.get("competition_sources"):
            problems.append("a submission kernel needs competition_sources, e.g. ['birdclef-2025']")
        if str(meta.get("enable_gpu", False)).lower() == "true":
            warnings.append("enable_gpu is true; BirdCLEF scores CPU notebooks")
    _raise_if(problems, "kernel-metadata.json")
    return warnings
