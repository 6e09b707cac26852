"""od/odapi_schema.py: the OD API pipeline.config subset, parsed by protobuf, and every field
a file sets (the mapping onto od's config: tests/test_odapi.py)."""
import pytest
from google.protobuf import text_format

from od import odapi_schema

TEXT = """
model { ssd { num_classes: 3 image_resizer { fixed_shape_resizer { height: 320 width: 320 } } } }
train_config {
  batch_size: 8
  data_augmentation_options { random_horizontal_flip {} }
  optimizer { momentum_optimizer { learning_rate { constant_learning_rate {
    learning_rate: -0.5 } } } }
  some_future_field: 1
}
"""


def test_parse_keeps_known_fields_and_skips_unknown_ones():
    msg = odapi_schema.parse(TEXT)
    assert msg.model.ssd.num_classes == 3 and msg.train_config.batch_size == 8
    with pytest.raises(text_format.ParseError):
        odapi_schema.parse("model { ssd { num_classes: three } }")


def test_field_paths_in_order_with_values_as_written():
    paths = odapi_schema.field_paths(TEXT)
    assert paths[0] == ("model.ssd.num_classes", "3")
    assert ("model.ssd.image_resizer.fixed_shape_resizer.width", "320") in paths
    assert ("train_config.data_augmentation_options.random_horizontal_flip", "{}") in paths
    assert ("train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate"
            ".learning_rate", "-0.5") in paths
    assert paths[-1] == ("train_config.some_future_field", "1")
