"""Does colour jitter help or hurt when the test images are never jittered?

For their final ResNet-18 the users trained with random crop + horizontal flip only and left
colour changes out, "since the test set has none". Colour jitter makes the training images
harder (running train accuracy drops) but may also make the network rely less on colour; whether
that costs or gains test accuracy on unjittered test images is the question. This study varies
the jitter strength (brightness, contrast and saturation each scaled by a factor drawn from
[1 - s, 1 + s] per image; 0 is no jitter) with and without crop + flip, on the users' ResNet-18
recipe, and reports test accuracy and the eval-mode train/test gap for each.
"""

from ablate import Preset, Study, choice

study = Study(
    name="color_jitter",
    question="Does colour jitter during training help or hurt test accuracy when the test images "
    "are never jittered, with and without crop + flip?",
    baseline=dict(
        dataset="cifar10",
        model="resnet18",
        width=64,
        dropout=0.0,
        augment="crop_flip+color_jitter",
        strength=0.0,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        scheduler="multistep",
        milestones=(7, 12),
        gamma=0.1,
        epochs=15,
        batch_size=128,
    ),
    factors=dict(strength=choice(0.0, 0.2, 0.4), augment=choice("crop_flip+color_jitter", "color_jitter")),
    seeds=3,
    metric="test_acc",
    metrics=("test_acc", "gap_eval"),
    within=("augment",),
    design="grid",
    presets=dict(
        full=Preset(
            "the users' scale: all of CIFAR-10, width 64, 15 epochs, SGD 0.1 / 0.9 / 5e-4, "
            "steps at 7 and 12 (GPU advised)"
        ),
        cpu=Preset(
            "under 10 minutes on a 2-core CPU: cifar10-mini (3,000 train images), width 8, "
            "6 epochs, steps at 3 and 5",
            dict(
                dataset="cifar10-mini",
                width=8,
                epochs=6,
                milestones=(3, 5),
                train_size=3000,
                train_eval_size=1000,
            ),
        ),
        mid=Preset(
            "about an hour on a 2-core CPU: 12,000 of CIFAR-10's training images "
            "(--data-dir), the full test set, width 8, 10 epochs with steps at 5 and 8, 6 seeds",
            dict(width=8, epochs=10, milestones=(5, 8), train_size=12000, train_eval_size=2000),
            seeds=6,
        ),
        smoke=Preset(
            "a functional check in well under a minute",
            dict(
                dataset="cifar10-mini",
                width=4,
                epochs=1,
                batch_size=64,
                milestones=(1,),
                train_size=256,
                test_size=200,
                train_eval_size=200,
            ),
        ),
    ),
    default_preset="cpu",
)
