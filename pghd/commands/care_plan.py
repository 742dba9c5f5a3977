"""``pghd care-plan``: show, set and clear a patient's care plan over the care-team API.

``set`` changes only what its options name: it reads the current plan, applies the options
and puts the whole plan back (``--replace`` starts from an empty plan instead). Values are in
canonical units (heart rate /min, glucose mg/dL, SpO2 %). The API validates the plan; a
refused one prints the problem and each wrong field, and exits 1. Same ``--url`` and
``--token`` (``PGHD_CARE_API_URL``, ``PGHD_CARE_TOKEN``) as ``pghd alerts``, with the same
fallback: the local stack's care-team API and its admin token (after ``make run``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from pghd.commands.alerts import JsonOption, TokenOption, UrlOption, _call, care_api_target

__all__ = ["app", "apply_options", "describe_plan"]

app = typer.Typer(
    help="Per-patient care plans (SpO2 scale, limits, detector overrides), over the care-team"
    " API. Without --url and --token: the local stack's API and its admin token (after"
    " `make run`).",
    no_args_is_help=True,
)

PatientArg = Annotated[str, typer.Argument(help="The patient's id.")]


def _path(patient_id: str) -> str:
    return f"/v1/patients/{patient_id}/care-plan"


def _pair(text: str, option: str) -> tuple[str, str]:
    channel, sep, rest = text.partition("=")
    if not sep or not channel.strip():
        raise typer.BadParameter(f"{text!r} is not CHANNEL=...", param_hint=option)
    return channel.strip(), rest.strip()


def _number(text: str, option: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number", param_hint=option) from None


def apply_options(
    current: dict[str, Any],
    *,
    spo2_scale: int | None = None,
    hr_low: float | None = None,
    hr_high: float | None = None,
    glucose_low: float | None = None,
    glucose_high: float | None = None,
    limits: list[str] | None = None,
    z: list[str] | None = None,
    off: list[str] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The plan settings ``current`` with the options of ``pghd care-plan set`` applied.

    ``limits``: ``CHANNEL=LOW:HIGH`` (a side may be empty; ``CHANNEL=`` drops the limits of
    the channel); ``z``: ``CHANNEL=WARNING[:CRITICAL]``; ``off``: ``CHANNEL=DETECTOR``.
    """
    plan: dict[str, Any] = {
        "spo2_scale": current.get("spo2_scale", 1),
        "limits": {k: dict(v) for k, v in (current.get("limits") or {}).items()},
        "detectors": {k: dict(v) for k, v in (current.get("detectors") or {}).items()},
        "note": current.get("note", ""),
    }
    if spo2_scale is not None:
        plan["spo2_scale"] = spo2_scale
    if note is not None:
        plan["note"] = note
    sides = {
        ("heart_rate", "low"): hr_low,
        ("heart_rate", "high"): hr_high,
        ("blood_glucose", "low"): glucose_low,
        ("blood_glucose", "high"): glucose_high,
    }
    for (channel, side), value in sides.items():
        if value is not None:
            plan["limits"].setdefault(channel, {})[side] = value
    for text in limits or []:
        channel, rest = _pair(text, "--limit")
        if not rest:
            plan["limits"].pop(channel, None)
            continue
        low, sep, high = rest.partition(":")
        if not sep:
            raise typer.BadParameter(f"{text!r} is not CHANNEL=LOW:HIGH", param_hint="--limit")
        plan["limits"][channel] = {"low": _number(low, "--limit"), "high": _number(high, "--limit")}
    for text in z or []:
        channel, rest = _pair(text, "--z")
        warning, _, critical = rest.partition(":")
        entry = plan["detectors"].setdefault(channel, {})
        entry["z_warning"] = _number(warning, "--z")
        if critical:
            entry["z_critical"] = _number(critical, "--z")
    for text in off or []:
        channel, detector = _pair(text, "--off")
        entry = plan["detectors"].setdefault(channel, {})
        entry["off"] = sorted({*entry.get("off", ()), detector})
    return plan


def describe_plan(plan: dict[str, Any]) -> list[str]:
    """Lines a nurse reads: scale, limits, detector overrides, note, who set it and when."""
    lines = [f"patient {plan['patient_id']}: NEWS2 SpO2 scale {plan.get('spo2_scale', 1)}"]
    for channel, limit in sorted((plan.get("limits") or {}).items()):
        low, high = limit.get("low"), limit.get("high")
        shown = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
        lines.append(f"  limits {channel}: {shown}")
    for channel, tuning in sorted((plan.get("detectors") or {}).items()):
        parts = [f"{k} {tuning[k]:g}" for k in ("z_warning", "z_critical") if tuning.get(k)]
        if tuning.get("off"):
            parts.append(f"off: {', '.join(tuning['off'])}")
        lines.append(f"  detectors {channel}: {'; '.join(parts)}")
    if plan.get("note"):
        lines.append(f"  note: {plan['note']}")
    lines.append(f"  set by {plan.get('updated_by')} at {plan.get('updated_at')}")
    return lines


def _current(patient_id: str, *, url: str | None, token: str | None) -> dict[str, Any]:
    """The patient's plan, or ``{}`` when there is none (404)."""
    url, token = care_api_target(url, token)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        response = httpx.get(f"{url}{_path(patient_id)}", headers=headers, timeout=15.0)
    except httpx.TransportError as exc:
        typer.echo(f"cannot reach the care-team API at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if response.status_code == 404:
        return {}
    if response.status_code != 200:  # let the shared client print the problem and exit 1
        _call("GET", _path(patient_id), url=url, token=token)
    plan: dict[str, Any] = response.json()
    return plan


@app.command()
def show(
    patient_id: PatientArg,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a patient's care plan."""
    plan = _call("GET", _path(patient_id), url=url, token=token)
    typer.echo(json.dumps(plan, indent=2) if as_json else "\n".join(describe_plan(plan)))


@app.command("set")
def set_plan(
    patient_id: PatientArg,
    spo2_scale: Annotated[
        int | None, typer.Option("--spo2-scale", min=1, max=2, help="NEWS2 SpO2 scale (1 or 2).")
    ] = None,
    hr_low: Annotated[float | None, typer.Option("--hr-low", help="Heart rate /min.")] = None,
    hr_high: Annotated[
        float | None, typer.Option("--hr-high", help="Heart rate /min (resting tachycardia).")
    ] = None,
    glucose_low: Annotated[float | None, typer.Option("--glucose-low", help="mg/dL.")] = None,
    glucose_high: Annotated[float | None, typer.Option("--glucose-high", help="mg/dL.")] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", help="CHANNEL=LOW:HIGH, a side may be empty; CHANNEL= drops it."),
    ] = None,
    z: Annotated[
        list[str] | None, typer.Option("--z", help="CHANNEL=WARNING[:CRITICAL] deviation z.")
    ] = None,
    off: Annotated[
        list[str] | None, typer.Option("--off", help="CHANNEL=DETECTOR (deviation, cusum, ...).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text for the care team.")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Start from an empty plan, not the current one.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Set a patient's care plan (only what the options name changes)."""
    current = {} if replace else _current(patient_id, url=url, token=token)
    body = apply_options(
        current,
        spo2_scale=spo2_scale,
        hr_low=hr_low,
        hr_high=hr_high,
        glucose_low=glucose_low,
        glucose_high=glucose_high,
        limits=limit,
        z=z,
        off=off,
        note=note,
    )
    plan = _call("PUT", _path(patient_id), url=url, token=token, body=body)
    typer.echo("\n".join(describe_plan(plan)))
    typer.echo("accepted: readings from now on are judged with this plan")


@app.command()
def clear(patient_id: PatientArg, url: UrlOption = None, token: TokenOption = None) -> None:
    """Clear a patient's care plan (judged with the standard thresholds again)."""
    _call("DELETE", _path(patient_id), url=url, token=token)
    typer.echo(f"care plan of {patient_id} cleared")
