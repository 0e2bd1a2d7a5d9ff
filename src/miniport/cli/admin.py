"""``miniport admin``: console users. The first admin is created here:

    miniport admin create NAME [--password P] [--role admin|developer|viewer]
    miniport admin reset-password NAME

Without ``--password`` a one-time password is generated and printed once; the user must choose
their own password at first sign-in (the console asks for it before anything else). A one-time
password expires after 72 hours; ``reset-password`` prints a new one (also for the only admin,
who has nobody to reset it on the Users page)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from .backend import call
from .common import DataDir, Json, Role, console, render

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
    role: Annotated[Role, typer.Option("--role", help="What the user may do")] = Role.admin,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create a console user (by default an admin)."""
    created = call(
        data_dir, as_json, "console.user.create", name=name, password=password, role=role.value
    )

    def human() -> None:
        console.print(
            f"Console user [bold]{escape(created['name'])}[/bold] ({created['role']}) created."
        )
        if "one_time_password" in created:
            console.print(
                f"One-time password: [bold]{escape(created['one_time_password'])}[/bold]",
                highlight=False,
            )
            console.print(
                "It is shown only now and expires in 72 hours; a new password is chosen at "
                "first sign-in."
            )
        console.print("Sign in at /console on the server (`miniport serve`).")

    render(as_json, created, human)


@admin_cmd.command("list")
def admin_list(data_dir: DataDir = None, as_json: Json = False) -> None:
    """The console users."""
    from rich.table import Table

    users = call(data_dir, as_json, "console.user.list")["users"]

    def human() -> None:
        table = Table("name", "role", "state")
        for u in users:
            state = (
                "disabled"
                if u["disabled"]
                else ("one-time password" if u["must_change_password"] else "active")
            )
            table.add_row(escape(u["name"]), u["role"], state)
        console.print(table)

    render(as_json, {"users": users}, human)


@admin_cmd.command("reset-password")
def admin_reset_password(name: str, data_dir: DataDir = None, as_json: Json = False) -> None:
    """A new one-time password for a console user (shown once); their sessions end."""
    reset = call(data_dir, as_json, "console.user.reset", name=name)

    def human() -> None:
        console.print(
            f"One-time password for [bold]{escape(reset['name'])}[/bold]: "
            f"[bold]{escape(reset['one_time_password'])}[/bold]",
            highlight=False,
        )
        console.print("It is shown only now and expires in 72 hours; a new password is chosen "
                      "at first sign-in.")

    render(as_json, reset, human)
