"""Stage 6, a study run: the loop that takes trials from the queue and trains them
(:mod:`.runner`, its options and summary in :mod:`.interface`), one attempt trained and recorded
(:mod:`.attempt`, with :mod:`.provenance` and the kept weights of :mod:`.keep`), the device
(:mod:`.device`), the Optuna study as the queue (:mod:`.queue`, :mod:`.storage`,
:mod:`.liveness`), seeds added as the answer needs them (:mod:`.seeds`), worker processes and
GPUs (:mod:`.workers`, :mod:`.gpus`), and ``ablate status`` (:mod:`.status`)."""
