"""`shimmfa quorum`: break-glass by quorum, farMFA-compatible. The dealer
(`keygen`, `deal`, `register`), the oracle (`serve`) and its client
(`open`, `approve`, `seal`, `status`, `totp`; `--token-file` for the oracle
inside the central service). Secrets (the TOTP secret, identities,
the KEK) are read from files or stdin and written to files made 0600; none
is ever accepted on the command line or printed, except a new identity
when `keygen` has no `-o` (as `age-keygen` does)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shimmfa.cli.base import command_group, err
from shimmfa.errors import QuorumError

if TYPE_CHECKING:
    from pyrage import x25519

    from shimmfa.core.toc import Toc

app = command_group(
    "Break-glass by quorum (farMFA-compatible): deal a TOTP secret as age-sealed Tocs, "
    "run the oracle that releases the code once enough holders approve, and talk to it."
)

Url = Annotated[str, typer.Option("--url", help="The oracle's base URL, e.g. http://HOST:8080.")]
CaFile = Annotated[
    Path | None, typer.Option("--ca-file", help="PEM CA to trust for an https:// oracle.")
]
SessionId = Annotated[str, typer.Option("--session", help="The session id (16 characters).")]
TocFile = Annotated[
    Path,
    typer.Option(
        "--toc-file",
        help="Your Toc: its JSON, sealed to you (armored age), or the dealer's output "
        "(with --player); - for stdin.",
    ),
]
Identity = Annotated[
    list[Path] | None,
    typer.Option("--identity", "-i", help="Your age identity file, to open a sealed Toc."),
]
Player = Annotated[
    str | None, typer.Option("--player", help="Your name in the dealer's output (GROUP/NAME).")
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="A file holding your API token (smt_...), for the oracle inside the central "
        "service (--url https://CENTRAL/quorum).",
    ),
]


def _token(path: Path | None) -> str | None:
    from shimmfa.quorum.holder import read_text

    if path is None:
        return None
    return read_text(path).strip() or None


def write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise QuorumError(f"{path} exists; remove it or choose another file") from None
    except OSError as exc:
        raise QuorumError(f"{path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _identities(paths: list[Path] | None) -> list[x25519.Identity]:
    from shimmfa.quorum.age_tocs import read_identity_file

    return [identity for path in paths or () for identity in read_identity_file(path)]


def _holder_toc(toc_file: Path, identity: list[Path] | None, player: str | None) -> Toc:
    from shimmfa.quorum.holder import load_toc

    return load_toc(toc_file, _identities(identity), player)


def _echo_json(document: dict[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


# -- the dealer ---------------------------------------------------------------------------------


@app.command("keygen")
def keygen(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the identity here (0600).")
    ] = None,
) -> None:
    """Make an age identity for a Toc holder (like `age-keygen`) and print
    its public recipient, the `age1...` the dealer needs."""
    from shimmfa.quorum.age_tocs import identity_file_text, new_identity

    identity = new_identity()
    text = identity_file_text(identity, time.time())
    if output is None:
        err(f"public key: {identity.to_public()}")
        typer.echo(text, nl=False)
        return
    write_private(output, text)
    typer.echo(str(identity.to_public()))


@app.command("deal")
def deal(
    secret_file: Annotated[
        Path,
        typer.Option(
            "--secret-file",
            help="File holding the base32 TOTP secret (- for stdin); never on the command line.",
        ),
    ],
    player: Annotated[
        list[str],
        typer.Option(
            "--player", "-p", help="NAME=age1... (GROUP/NAME=age1... with --group); repeat."
        ),
    ],
    threshold: Annotated[
        int | None, typer.Option("--threshold", "-t", help="Tocs needed (one group).")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="NAME:THRESHOLD; several groups are ANDed. Repeat."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Free text in every Toc.")] = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here (else stdout).")
    ] = None,
) -> None:
    """Split a TOTP secret into Tocs, each sealed to its holder's age key.
    Several `--group`s need a quorum of every group (2 of clinical AND 1 of
    infosec); the README explains the construction."""
    from shimmfa.quorum.dealing import deal_document, normalised_secret, parse_group, parse_player

    players = [parse_player(spec) for spec in player]
    groups = [parse_group(spec) for spec in group or ()]
    secret = normalised_secret(_read_secret(secret_file))
    document = deal_document(secret, players, threshold=threshold, groups=groups, note=note)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists():
        raise QuorumError(f"{output} exists; remove it or choose another file")
    output.write_text(text, encoding="utf-8")
    tocs = document["tocs"]
    typer.echo(f"dealt {len(tocs)} Tocs to {output}: {', '.join(tocs)}")


def _read_secret(path: Path) -> str:
    """The secret's text; a message never shows the path, which could be
    the secret itself typed by mistake."""
    from shimmfa.quorum.holder import read_text

    if str(path) != "-":
        try:
            mode = path.stat().st_mode
        except OSError:
            raise QuorumError(
                "--secret-file: no such file (give the path of a file holding the secret, "
                "or - to read it from stdin)"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            err("warning: the secret file is readable by others; chmod 600 it")
    return read_text(path)


@app.command("register")
def register(
    deal_file: Annotated[Path, typer.Argument(help="The dealer's output (`quorum deal -o`).")],
    database_url: Annotated[str, typer.Option("--database-url", help="The oracle's database.")],
) -> None:
    """Record a deal's groups in the oracle's database: their dealt
    thresholds then win over whatever an applicant's toc_zero says."""
    from shimmfa.central.db import open_engine
    from shimmfa.quorum.dealing import dealt_groups
    from shimmfa.quorum.serve import load_deal
    from shimmfa.quorum.store_sql import SqlGroupRegistry, create_tables

    groups = dealt_groups(load_deal(deal_file))
    engine = open_engine(database_url)
    try:
        create_tables(engine)
        SqlGroupRegistry(engine).register(groups)
    finally:
        engine.dispose()
    for item in groups:
        typer.echo(f"registered group {item.group_id} (needs {item.quorum} of {item.group_size})")


# -- the oracle ---------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8080,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="Keep sessions in memory (lost at exit).")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="sqlite:///FILE or postgresql+psycopg://USER@HOST/DB."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of --tls-cert.")] = None,
    deal_file: Annotated[
        list[Path] | None,
        typer.Option("--register", help="A dealer's output whose groups to record; repeat."),
    ] = None,
    require_registered: Annotated[
        bool, typer.Option(help="Refuse sessions of groups never registered.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    """Run the oracle: farMFA's HTTP API (`POST /sessions`, `GET
    /sessions/{id}`, `POST /sessions/{id}/tocs`, `POST /sessions/{id}/totp`)."""
    from shimmfa.central.db import open_engine
    from shimmfa.quorum.serve import ServeOptions, run

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("choose debug, info, warning or error", param_hint="--log-level")
    if ephemeral == (database_url is not None):
        raise QuorumError("give either --ephemeral or --database-url URL")
    run(
        ServeOptions(
            host=host,
            port=port,
            ephemeral=ephemeral,
            tls_cert=tls_cert,
            tls_key=tls_key,
            register=tuple(deal_file or ()),
            require_registered=require_registered,
            log_level=log_level.lower(),
        ),
        None if database_url is None else open_engine(database_url),
    )


# -- the client ---------------------------------------------------------------------------------


@app.command("open")
def open_session(
    toc_file: TocFile,
    url: Url,
    kek_file: Annotated[
        Path, typer.Option("--kek-file", help="Where to keep the session's KEK (made 0600).")
    ],
    identity: Identity = None,
    player: Player = None,
    ttl: Annotated[int, typer.Option(help="Seconds until the session expires (60..86400).")] = 60,
    ca_file: CaFile = None,
    token_file: TokenFile = None,
) -> None:
    """Ask for the code (you are the applicant): open a session with your
    own Toc. Prints the session and its TEK for the other holders; the KEK
    goes to --kek-file only."""
    from shimmfa.quorum.client import OracleClient

    toc = _holder_toc(toc_file, identity, player)
    if kek_file.exists():
        raise QuorumError(f"{kek_file} exists; remove it or choose another file")
    with OracleClient(url, ca_file=ca_file, token=_token(token_file)) as client:
        credentials = client.open_session(toc, ttl)
    kek = credentials.pop("kek", None)
    if not isinstance(kek, str):
        raise QuorumError("the oracle's answer holds no KEK")
    write_private(kek_file, kek + "\n")
    _echo_json(credentials)


@app.command("approve")
def approve(
    session: SessionId,
    toc_file: TocFile,
    tek: Annotated[str, typer.Option("--tek", help="The session's TEK (age1...).")],
    url: Url,
    identity: Identity = None,
    player: Player = None,
    ca_file: CaFile = None,
    token_file: TokenFile = None,
) -> None:
    """Approve a session (you hold a Toc): seal your Toc to the session's
    TEK and send it."""
    from shimmfa.quorum.age_tocs import parse_recipient, seal_toc
    from shimmfa.quorum.client import OracleClient

    toc = _holder_toc(toc_file, identity, player)
    sealed = seal_toc(toc, parse_recipient(tek))
    with OracleClient(url, ca_file=ca_file, token=_token(token_file)) as client:
        client.submit(session, sealed)
        state = client.session(session)
    typer.echo(
        f"sent a Toc of group {toc.group_id} to session {session}; it has "
        f"{state.get('tocs_provided')} of the {state.get('tocs_threshold')} Tocs it needs"
    )


@app.command("seal")
def seal(
    toc_file: TocFile,
    tek: Annotated[str, typer.Option("--tek", help="The session's TEK (age1...).")],
    identity: Identity = None,
    player: Player = None,
) -> None:
    """Seal your Toc to a session's TEK and print it (armored age), to paste
    into the central service's approval page: your Toc in clear never
    leaves this machine."""
    from shimmfa.quorum.age_tocs import parse_recipient, seal_toc

    toc = _holder_toc(toc_file, identity, player)
    typer.echo(seal_toc(toc, parse_recipient(tek)), nl=False)


@app.command("status")
def status(
    session: SessionId, url: Url, ca_file: CaFile = None, token_file: TokenFile = None
) -> None:
    """Show a session: how many Tocs it has and needs, and when it expires."""
    from shimmfa.quorum.client import OracleClient

    with OracleClient(url, ca_file=ca_file, token=_token(token_file)) as client:
        _echo_json(client.session(session))


@app.command("totp")
def totp(
    session: SessionId,
    kek_file: Annotated[Path, typer.Option("--kek-file", help="The KEK `open` kept.")],
    url: Url,
    ca_file: CaFile = None,
    token_file: TokenFile = None,
) -> None:
    """Get the code (once) when enough holders have approved."""
    from shimmfa.quorum.client import OracleClient
    from shimmfa.quorum.holder import read_text

    kek = read_text(kek_file).strip()
    with OracleClient(url, ca_file=ca_file, token=_token(token_file)) as client:
        code = client.release(session, kek)
    typer.echo(code.get("totp", ""))
    err(f"valid until {code.get('totp_expires_at')}; the session is now closed")
