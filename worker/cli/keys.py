"""``imagegen keys``, ``imagegen budgets`` and ``imagegen spend``: tenants' API keys, their
budgets and shares of the fleet, and what they spent. Run where the database is reachable;
whoever can run them holds the database's credentials, so they need no key themselves."""

from __future__ import annotations

from typing import Any

import typer

from models.base import utcnow
from worker.cli.output import handles_errors, out, print_json
from worker.core.timespec import parse_since
from worker.service import keys, spend
from worker.service.batches import parse_batch_id

keys_app = typer.Typer(help="Tenants' API keys: create, list, revoke.", no_args_is_help=True)
budgets_app = typer.Typer(
    help="Tenants' budgets, weights and in-flight caps.", no_args_is_help=True
)


@keys_app.command("create")
@handles_errors
def create(
    tenant: str = typer.Option(..., help="The tenant the key acts for (created if new)."),
    scopes: str = typer.Option(
        ..., help="Comma-separated: read, produce, operate, admin (e.g. read,produce)."
    ),
    expires: str | None = typer.Option(None, help="Lifetime, e.g. 90d, 12h (default: none)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Create a key and print its secret: the only time it is shown (only a hash is kept)."""
    created = keys.create(tenant=tenant, scopes=scopes, expires=expires)
    if as_json:
        print_json(created)
        return
    out.print(
        f"key {created['id']} for tenant {created['tenant']} "
        f"({','.join(created['scopes'])}; expires {created['expires_at'] or 'never'}):",
        highlight=False,
    )
    out.print(created["key"], highlight=False, soft_wrap=True)
    out.print("Store it now: it cannot be shown again.", highlight=False)


@keys_app.command("list")
@handles_errors
def list_keys(
    tenant: str | None = typer.Option(None, help="Only this tenant's keys."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """Every key: id, tenant, scopes, created, expires, revoked (never a secret)."""
    found = keys.list_keys(tenant=tenant)
    if as_json:
        print_json(found)
        return
    for key in found:
        state = "active" if key["active"] else ("revoked" if key["revoked_at"] else "expired")
        out.print(
            f"{key['id']}  {key['tenant']:<20} {','.join(key['scopes']):<28} {state}"
            f"  expires {key['expires_at'] or 'never'}",
            highlight=False,
        )


@keys_app.command("revoke")
@handles_errors
def revoke(
    key_id: str = typer.Argument(..., metavar="ID", help="The key's id (k_…)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Revoke a key: every API process refuses it from the next call."""
    view = keys.revoke(key_id)
    if as_json:
        print_json(view)
    else:
        out.print(f"key {view['id']} revoked at {view['revoked_at']}", highlight=False)


@budgets_app.command("set")
@handles_errors
def set_budget(
    tenant: str = typer.Option(..., help="The tenant (created if new)."),
    daily: float | None = typer.Option(None, help="Most it may spend per UTC day."),
    monthly: float | None = typer.Option(None, help="Most it may spend per UTC month."),
    weight: float | None = typer.Option(None, help="Its share of the fleet (default 1)."),
    max_in_flight: int | None = typer.Option(None, help="Most predictions it may have out."),
    submit_rate: float | None = typer.Option(None, help="Most submissions per second."),
    clear: list[str] = typer.Option(
        [], help="Remove a limit: daily, monthly, max_in_flight or submit_rate (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Set a tenant's budgets and share. Jobs waiting on a budget go on once it allows them."""
    view = spend.set_budget(
        tenant=tenant,
        daily=daily,
        monthly=monthly,
        weight=weight,
        max_in_flight=max_in_flight,
        submit_rate=submit_rate,
        clear=clear,
    )
    if as_json:
        print_json(view)
    else:
        _print_budget(view)


@budgets_app.command("list")
@handles_errors
def list_budgets(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Every tenant: budgets, weight, cap, and today's and this month's spend."""
    found = spend.list_budgets()
    if as_json:
        print_json(found)
        return
    for view in found:
        _print_budget(view)


def _print_budget(view: dict[str, Any]) -> None:
    today, month = view["today"], view["this_month"]
    out.print(
        f"{view['tenant']:<20} daily {_limit(view['daily'])} (today {today['charged']:.4f}"
        f" + possible {today['possible']:.4f})  monthly {_limit(view['monthly'])} (this month"
        f" {month['charged']:.4f})  weight {view['weight']:g}"
        f"  max in flight {view['max_in_flight'] if view['max_in_flight'] is not None else '-'}",
        highlight=False,
    )


def _limit(amount: float | None) -> str:
    return "none" if amount is None else f"{amount:.4f}"


@handles_errors
def spend_command(
    tenant: str | None = typer.Option(None, help="Only this tenant."),
    since: str | None = typer.Option(None, help="A duration back (24h, 30d) or an ISO time."),
    batch_id: str | None = typer.Option(None, "--batch", help="Only this batch."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """What submissions cost: charged (accepted by the provider) and possible (ambiguous), per
    tenant and UTC day, at IMAGEGEN_PRICES (an estimate)."""
    report = spend.report(
        tenant=tenant,
        batch_id=parse_batch_id(batch_id) if batch_id else None,
        since=parse_since(since, now=utcnow()) if since else None,
    )
    if as_json:
        print_json(report)
        return
    for name, sums in report["tenants"].items():
        out.print(f"{name:<20} {_sums(sums)}", highlight=False)
    out.print(f"{'total':<20} {_sums(report)}", highlight=False)


def _sums(sums: dict[str, Any]) -> str:
    charged, possible = sums["charged"], sums["possible"]
    return (
        f"charged {charged['amount']:.4f} ({charged['count']} submits)"
        f"  possible {possible['amount']:.4f} ({possible['count']} ambiguous)"
    )
