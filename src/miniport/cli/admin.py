"""``miniport admin``: console users. The first admin is created here:

    miniport admin create NAME [--password P] [--role admin|developer|viewer]

Without ``--password`` a one-time password is generated and printed once; the user must choose
their own password at first sign-in (the console asks for it before anything else)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..platform import Platform
from .common import DataDir, Json, console, emit, run_with_platform

admin_cmd = typer.Typer(help="Console users (sign-in for the web console).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(admin_cmd, name="admin")


@admin_cmd.command("create")
def admin_create(
    name: str,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            help="The password (8+ characters); without it a one-time password is "
            "printed and must be changed at first sign-in",
        ),
    ] = None,
    role: Annotated[str, typer.Option("--role", help="admin, developer or viewer")] = "admin",
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create a console user (by default an admin)."""

    async def work(p: Platform) -> dict[str, Any]:
        user, generated = await p.console_users.create_user(name, role, password, actor="cli")
        out: dict[str, Any] = {
            "name": user.name,
            "role": user.role,
            "must_change_password": user.must_change_password,
        }
        if generated:
            out["one_time_password"] = generated
        return out

    created = run_with_platform(data_dir, as_json, work)

    def human() -> None:
        console.print(f"Console user [bold]{created['name']}[/bold] ({created['role']}) created.")
        if "one_time_password" in created:
            console.print(
                f"One-time password: [bold]{created['one_time_password']}[/bold]", highlight=False
            )
            console.print("It is shown only now; a new password is chosen at first sign-in.")
        console.print("Sign in at /console on the server (`miniport serve`).")

    emit(as_json, created, human)


@admin_cmd.command("list")
def admin_list(data_dir: DataDir = None, as_json: Json = False) -> None:
    """The console users."""
    from rich.table import Table

    async def work(p: Platform) -> list[dict[str, Any]]:
        return [u.__dict__ for u in await p.console_users.list_users()]

    users = run_with_platform(data_dir, as_json, work)

    def human() -> None:
        table = Table("name", "role", "state")
        for u in users:
            state = (
                "disabled"
                if u["disabled"]
                else ("one-time password" if u["must_change_password"] else "active")
            )
            table.add_row(u["name"], u["role"], state)
        console.print(table)

    emit(as_json, {"users": users}, human)
