"""Where a native agent keeps itself across restarts: DIR/identity.json and DIR/membership.json, both 0600.

`edge-agent --data-dir DIR` comes back under the same key (the admin pins an id to its
first key) and, in an admitted swarm, with the certificate and epoch key it was given
(member_store.py's signed document), so a restart spends no invite. The files are
guarded as the admin's are (admin_file.py): private, replaced atomically, size-bounded.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Sequence

from ..errors import MemberStateError
from .admin_file import AdminStateFile, load_or_create_identity
from .identity import IdentityManager
from .member_store import MAX_STATE_BYTES, resume_membership, saved_agent_id, sign_membership
from .swarm import P2PSwarm


class MemberStateFile(AdminStateFile):
    error = MemberStateError
    what = "member state"
    max_bytes = MAX_STATE_BYTES


class MemberDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state = MemberStateFile(self.path / "membership.json")
        self._saved_epoch: int | None = None

    async def identity(self, crypto) -> IdentityManager:
        """Our identity, made and saved (0600) on the first start; IdentityFileError for a damaged one."""
        return await load_or_create_identity(crypto, self.path / "identity.json")

    async def resume(self, identity: IdentityManager, capabilities: Sequence[str], agent_id: str | None,
                     swarm_id: str | None = None) -> P2PSwarm | None:
        """The admitted swarm we were admitted to, None when nothing is saved yet; MemberStateError when the saved
        membership is not ours, not of `agent_id` or not of `swarm_id` (the swarm of the invite we were given)."""
        text = await self.state.load()
        if text is None:
            return None
        saved_id = saved_agent_id(text)
        if agent_id is not None and agent_id != saved_id:
            raise MemberStateError(f"{self.state.path} is the membership of {saved_id!r}, not {agent_id!r}")
        swarm = await resume_membership(identity, text, capabilities)
        if swarm_id is not None and swarm.swarm_id != swarm_id:
            raise MemberStateError(f"{self.state.path} is a membership of swarm {swarm.swarm_id}, the invite is for "
                                   f"{swarm_id}; delete {self.path} to join with the invite")
        self._saved_epoch = swarm.admission.epochs.epoch
        return swarm

    async def keep(self, swarm: P2PSwarm) -> None:
        """Save the membership when its epoch key is new (after admission, after a rekey)."""
        admission = swarm.admission
        if admission is None or not admission.admitted or admission.epochs.epoch == self._saved_epoch:
            return
        epoch = admission.epochs.epoch
        await self.state.save(await sign_membership(swarm))
        self._saved_epoch = epoch

    async def keep_up(self, swarm: P2PSwarm, every_s: float = 1.0) -> None:
        """Save each new epoch key until cancelled: a restart after a rekey must not come back with the old one."""
        while True:
            await asyncio.sleep(every_s)
            await self.keep(swarm)
