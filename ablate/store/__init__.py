"""Stage 3, where results live: a study's folder and its one-plan guard (:mod:`.folder`), the
trials/epochs/classes tables (:mod:`.tables`), kept weights (:mod:`.weights`), and what the
folder's trials computed with, held fixed (:mod:`.identity`)."""
