"""``RobustModel`` and the architectures it is built with.

:class:`RobustModel` trains on ``(x, {"label": noisy, "clean_label": clean})`` with any
compiled loss and reports ``clean_fit``, ``noisy_fit`` (memorisation) and ``noisy_correct``
(:mod:`._robust`); :func:`build_model` builds one of :data:`ARCHITECTURES`
(:mod:`._architectures`), or any ``keras.applications`` network under a new head
(:func:`backbone_model`, :mod:`._backbones`). :class:`EarlyLearning` (:mod:`._early_learning`):
ELR's per-example targets, which a ``RobustModel`` owns when compiled with them. TensorFlow is imported only by its TensorFlow
code paths, so the models run (and import) on the JAX backend too.
"""

from keras_imae.models._architectures import (ARCHITECTURES, ShortcutA, build_model,
                                              check_input_dropout, check_model_name,
                                              cifar_resnet, cnn, mlp)
from keras_imae.models._backbones import (MIN_IMAGE_SIZE, BackbonePreprocess, backbone_layer,
                                          backbone_model, backbone_names, check_weights,
                                          default_image_size, is_backbone,
                                          set_backbone_trainable, weights_digest)
from keras_imae.models._early_learning import EarlyLearning
from keras_imae.models._keras_compat import set_initial_epoch
from keras_imae.models._robust import FIT_METRICS, RobustModel

__all__ = ["ARCHITECTURES", "BackbonePreprocess", "EarlyLearning", "FIT_METRICS", "MIN_IMAGE_SIZE", "RobustModel",
           "ShortcutA", "backbone_layer", "backbone_model", "backbone_names", "build_model",
           "check_input_dropout", "check_model_name", "check_weights", "cifar_resnet", "cnn",
           "default_image_size", "is_backbone", "mlp", "set_backbone_trainable",
           "set_initial_epoch", "weights_digest"]
