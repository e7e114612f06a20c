import pytest

from latentbridge.errors import InputError
from latentbridge.train import load_config

from . import toy_recipe  # noqa: F401 - registers the toy recipe


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_config_reads_recipe_train_and_optim_tables(tmp_path):
    cfg = load_config(write(tmp_path, 'recipe = "toy"\n[train]\nsteps = 7\n[optim]\nlr = 1\n'))
    assert cfg.recipe == "toy" and cfg.train.steps == 7 and cfg.optim.lr == 1.0 and cfg.options.width == 8


def test_config_recipe_table_carries_recipe_options(tmp_path):
    cfg = load_config(write(tmp_path, '[recipe]\nname = "toy"\nwidth = 3\n'))
    assert cfg.options.width == 3


def test_config_unknown_key_lists_the_allowed_ones(tmp_path):
    with pytest.raises(InputError, match="unknown key.*stepz.*allowed: steps"):
        load_config(write(tmp_path, 'recipe = "toy"\n[train]\nstepz = 7\n'))


def test_config_wrong_type_is_named(tmp_path):
    with pytest.raises(InputError, match="train.steps.*expected int"):
        load_config(write(tmp_path, 'recipe = "toy"\n[train]\nsteps = "many"\n'))


def test_config_unknown_recipe_lists_the_known_ones(tmp_path):
    with pytest.raises(InputError, match="known recipes:.*interposer"):
        load_config(write(tmp_path, 'recipe = "nope"\n'))


def test_config_bad_choice_lists_the_choices(tmp_path):
    with pytest.raises(InputError, match="bf16"):
        load_config(write(tmp_path, 'recipe = "toy"\n[train]\nprecision = "fp8"\n'))


def test_config_export_dtype_defaults_to_float16_and_takes_the_storage_dtypes_only(tmp_path):
    assert load_config(write(tmp_path, 'recipe = "toy"\n')).export.dtype == "float16"
    cfg = load_config(write(tmp_path, 'recipe = "toy"\n[export]\ndtype = "bfloat16"\n'))
    assert cfg.export.dtype == "bfloat16" and cfg.to_dict()["export"] == {"dtype": "bfloat16"}
    with pytest.raises(InputError, match="export.dtype = 'int8': use one of float16, bfloat16, float32"):
        load_config(write(tmp_path, 'recipe = "toy"\n[export]\ndtype = "int8"\n'))


def test_config_that_is_not_toml_says_so(tmp_path):
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(write(tmp_path, "recipe = \n"))


def test_config_cli_overrides_replace_train_values(tmp_path):
    assert load_config(write(tmp_path, 'recipe = "toy"\n'), overrides={"steps": 3}).train.steps == 3


@pytest.mark.parametrize(("recipe", "key", "value"), [("interposer", "arch", "v5"), ("interposer", "loss", "huber"),
                                                       ("upscaler", "resize", "lanczos"), ("previewer", "target", "vae")])
def test_a_recipe_option_outside_its_choices_is_refused_when_the_config_is_read(tmp_path, recipe, key, value):
    with pytest.raises(InputError, match=f"recipe.{key} = '{value}': use one of"):
        load_config(write(tmp_path, f'[recipe]\nname = "{recipe}"\n{key} = "{value}"\n'))
