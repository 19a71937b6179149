"""The run folder's lock, ``RUN_DIR/.lock``: one writer per run folder (train, finetune, sweep).

The lock itself is shared with the stages below the run room (corpus, tokenizer) and lives in
:mod:`blalm.lock` (flock; the holder's pid and host in the refusal; a dead holder's lock taken over).
"""

from blalm.lock import LOCK_FILE, RunLock, RunLocked, read_holder  # noqa: F401
