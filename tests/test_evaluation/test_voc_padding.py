"""DomainVOCMetric keeps one result per image, so the samples DefaultSampler(round_up=True) repeats are dropped."""
from __future__ import annotations

from ..test_detection.test_voc_domain_map import CAR_A, CAR_B, metric, sample


def test_padded_samples_of_the_sampler_are_not_counted():
    images = [sample([CAR_A], [0], [CAR_A], [0.9], [0]), sample([CAR_B], [0], [CAR_A], [0.8], [0]),
              sample([CAR_B], [0], [CAR_B], [0.7], [0]), sample([CAR_A], [0], [CAR_B], [0.6], [0])]
    exact, padded = metric(), metric()
    exact.process({}, images)
    padded.process({}, images + images[:2])  # 4 images over 3 processes: the first 2 come again
    assert padded.evaluate(4) == exact.evaluate(4)
    repeated = metric()
    repeated.process({}, images + images[:2])
    assert repeated.evaluate(6) != exact.evaluate(4)  # the repeats would change the number if they counted
