"""Quorum break-glass, farMFA-compatible: the dealer (split a TOTP secret
into age-sealed Tocs, one group or several ANDed) and the oracle (farMFA's
four HTTP endpoints; it releases the current code once a quorum of holders
has sent their Tocs).

It may import `shimmfa.errors`, `shimmfa.core` (Shamir, Tocs, dealing,
TOTP, event times) and its libraries (pyrage, FastAPI, SQLAlchemy, httpx),
never the shim, the central service or the CLI: the central service mounts
the oracle's app and passes it its database engine, its dealt-group record
and the authenticated operator through the seams named below.

Modules:
    age_tocs     seal a Toc to an age recipient (ASCII armor) and open it
    session_keys the session's TEK/KEK pair (farMFA's one-time-pad scheme)
    dealing      the dealer: player and group specs -> the dealer's JSON
    records      what a session is made of; the store and registry seams
    approvers    who calls, as the host authenticated them: the groups they
                 hold, one Toc each, the code to the applicant only
    refusals     the oracle's refusals, in words
    oracle       the rules: open, submit, release once (no HTTP here)
    api          the FastAPI app over an `Oracle` (farMFA's paths and bodies)
    store_memory sessions and dealt groups in memory (`serve --ephemeral`)
    store_sql    the same in SQLite or PostgreSQL, its own tables
    client       an HTTP client of the oracle (the CLI's approve and totp)
    holder       a holder's own Toc from a file (plain, sealed or a deal)
    serve        build and run the standalone oracle with uvicorn
"""
