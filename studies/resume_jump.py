"""Why does accuracy jump when training is stopped, saved and resumed?

Users train a CIFAR ResNet-18 in segments: every 10 epochs they save `net.state_dict()`, load it
into a fresh run with a fresh optimizer, set the learning rate for the next segment by hand
(0.1, 0.01, 0.001, 0.0005, 0.0001: the `piecewise` schedule) and go on. At the start of
every segment train and test accuracy step up, although continued training should be smooth.
A checkpoint of the weights alone loses the optimizer's momentum, the scheduler's position and
the random streams. This study restarts training every `resume_every` epochs and keeps a
different part of the state each time:

- none: continuous training, no restart (the reference);
- full: everything restored (a control: must match `none`);
- weights_only: fresh optimizer and fresh scheduler (the schedule starts over);
- weights_optimizer: optimizer state kept, fresh scheduler (the schedule starts over);
- weights_scheduler: fresh optimizer (momentum lost), schedule kept: the users' segments.

The epochs table marks the first epoch after each restart (`restart`); `ablate report` plots
accuracy around the restarts.
"""

from ablate import Preset, Study, choice

study = Study(
    name="resume_jump",
    question="Which part of the state lost at a naive restart makes accuracy jump, by how much, "
    "and in which direction?",
    baseline=dict(
        dataset="cifar10",
        model="resnet18",
        width=64,
        augment="crop_flip",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-5,
        # The users' rates per 10-epoch segment: 0.1, 0.01, 0.001, 0.0005, 0.0001.
        scheduler="piecewise",
        lr_factors=(1.0, 0.1, 0.01, 0.005, 0.001),
        lr_period=10,
        epochs=50,
        batch_size=128,
        resume="none",
        resume_every=10,
    ),
    factors=dict(resume=choice("none", "full", "weights_only", "weights_optimizer", "weights_scheduler")),
    seeds=3,
    metric="test_acc",
    # The jumps at each restart point; a jump within 1 point of continuous training is none.
    metrics=("jump_test", "jump_train"),
    delta=1.0,
    design="grid",
    presets=dict(
        full=Preset(
            "the users' scale: all of CIFAR-10, width 64, 50 epochs, restarts every 10 "
            "with the learning rate stepping down at each (GPU advised)"
        ),
        cpu=Preset(
            "about 4 minutes on a 2-core CPU: cifar10-mini (2,000 train images), width 8, "
            "8 epochs, restarts every 2",
            dict(
                dataset="cifar10-mini",
                width=8,
                epochs=8,
                resume_every=2,
                lr_period=2,
                lr_factors=(1.0, 1.0, 0.1, 0.01),
                train_size=2000,
                train_eval_size=1000,
            ),
        ),
        mid=Preset(
            "about an hour on a 2-core CPU: 12,000 of CIFAR-10's training images "
            "(--data-dir), the full test set, width 8, 12 epochs restarted every 3 with the "
            "users' rates per segment scaled (0.1, 0.01, 0.001, 0.0005), 6 seeds",
            dict(
                width=8,
                epochs=12,
                resume_every=3,
                lr_period=3,
                lr_factors=(1.0, 0.1, 0.01, 0.005),
                train_size=12000,
                train_eval_size=2000,
            ),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=4,
                resume_every=2,
                lr_period=2,
                lr_factors=(1.0, 0.1),
                batch_size=64,
                train_size=256,
                test_size=200,
                train_eval_size=200,
            ),
        ),
    ),
    default_preset="cpu",
)
