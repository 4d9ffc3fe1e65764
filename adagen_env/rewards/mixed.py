"""The fidelity reward: the adversarial reward plus a frozen classifier's log-probability of the requested class.

The paper trains the fidelity end of its fidelity-diversity blend on the adversarial reward mixed with ImageReward;
here the frozen `reward-classifier` plays ImageReward's part (`agents.blend` mixes the two policies). The
discriminator learns online exactly as `AdversarialReward`'s (same state, same exported weights); only the score
gains `classifier_weight * log p(label | image)`.

Letters: B images.
"""

from __future__ import annotations

from typing import Any

import torch

from adagen_env.errors import InvalidArgument
from adagen_env.rewards.adversarial import AdversarialReward
from adagen_env.rewards.frozen import ClassifierReward

CLASSIFIER_WEIGHT = 0.1
"""Weight of the log-probability. On 64 baseline images of the zoo's SiT at NFE 4 it has mean -0.86 and std 1.35
(reals: -0.007), most images near 0 and the off-class tail below -2.6: at 0.1 it moves a reward of the sigmoid
discriminator's (0, 1) range by about 0.1 per unit of spread, so it pushes off-class samples down without
outweighing the discriminator on the rest."""


class FidelityReward(AdversarialReward):
    """Reward = the discriminator's reward + `classifier_weight` * log p(label | image) under the frozen classifier.

    Args:
        num_classes, resolution: as `AdversarialReward`'s.
        classifier_weight: the weight of the log-probability (> 0).
        device: where both networks run.
        **adversarial: the rest of `AdversarialReward`'s arguments (architecture, augment, reward, ...).
    """

    def __init__(
        self,
        num_classes: int,
        resolution: int,
        classifier_weight: float = CLASSIFIER_WEIGHT,
        device: torch.device | str = "cpu",
        **adversarial: Any,
    ) -> None:
        if not classifier_weight > 0:
            raise InvalidArgument(f"classifier_weight must be > 0, got {classifier_weight!r}")
        super().__init__(num_classes, resolution, device=device, **adversarial)
        self.classifier = ClassifierReward(device=device)
        self.classifier_weight = float(classifier_weight)

    @torch.no_grad()
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) images and (B,) labels -> (B,) float32 mixed rewards."""
        adversarial = super().score(images, labels)
        return adversarial + self.classifier_weight * self.classifier.score(images, labels).to(adversarial.device)
