"""Which peer rank died or hangs, said by the survivors.

At start every rank records all ranks' (pid, host) pairs (:func:`record_peers`). When a
collective fails, or a launcher stops the ranks with SIGTERM because one died, a survivor looks
up which peer process on its machine is gone and names it (:func:`collective_failure`,
:func:`terminated_message`); a peer on another machine is named as one that did not answer.
"""

from __future__ import annotations

import os
import socket
import time
import zlib

import torch
import torch.distributed as dist

# Each rank's (pid, host hash), gathered at start: a survivor can then name a dead peer.
_peers: dict = {}


def _host_hash() -> int:
    return zlib.crc32(socket.gethostname().encode())


def record_peers(device: torch.device, timeout_s: float) -> None:
    _peers.clear()
    _peers["timeout_s"] = timeout_s
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    mine = torch.tensor([os.getpid(), _host_hash()], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    _peers["rank"] = dist.get_rank()
    _peers["table"] = [(int(t[0]), int(t[1])) for t in every]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by the launcher) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _dead_peers() -> tuple[list[int], str]:
    """(dead ranks on this machine, a phrase naming them or the ranks that did not answer)."""
    me, table = _peers["rank"], _peers["table"]
    here = _host_hash()
    local = [r for r, (_, host) in enumerate(table) if r != me and host == here]
    # A killed peer's sockets close while its process is still exiting: look for up to 2 s.
    for _ in range(40):
        dead = [r for r in local if _gone(table[r][0])]
        if dead or not local:
            break
        time.sleep(0.05)
    others = ", ".join(str(r) for r in range(len(table)) if r != me)
    if dead:
        return dead, (f"rank(s) {', '.join(map(str, dead))} died (process "
                      f"{', '.join(str(table[r][0]) for r in dead)} on this machine is gone)")
    return dead, (f"no rank on this machine died; rank(s) {others} did not answer (one hangs, or "
                  f"runs on another machine and died there: see that machine's log)")


def terminated_message() -> str:
    """What a rank says when SIGTERM stops it (launchers stop every rank when one fails)."""
    if "table" not in _peers:
        return ("stopped by SIGTERM; checkpoints written so far are complete: continue with "
                "--resume auto")
    dead, who = _dead_peers()
    why = (f"the launcher stops every rank when one fails: {who}" if dead
           else "by the launcher or the scheduler")
    return (f"rank {_peers['rank']} was stopped by SIGTERM ({why}). Continue with --resume auto "
            f"from the last checkpoint")


def collective_failure(e: BaseException) -> str | None:
    """The user-facing message of a collective that failed because a peer died or hung (None:
    ``e`` is something else). Names the dead rank(s) when they ran on this machine."""
    if "table" not in _peers or not isinstance(e, RuntimeError):
        return None
    text = str(e)
    low = text.lower()
    if not (isinstance(e, dist.DistError) or any(
            w in low for w in ("gloo", "nccl", "connection reset", "connection closed",
                               "timed out", "timeout", "socket", "broken pipe"))):
        return None
    me = _peers["rank"]
    _, who = _dead_peers()
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return (f"rank {me} lost contact with the other processes: {who}. A collective fails at "
            f"once when a peer's connection closes and after run.dist_timeout_s="
            f"{_peers['timeout_s']:g} s when a peer hangs. Continue with --resume auto from the "
            f"last checkpoint. ({type(e).__name__}: {first[:300]})")


