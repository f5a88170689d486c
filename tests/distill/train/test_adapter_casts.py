"""Skipping PEFT's input casts under bf16 autocast changes nothing but speed (the product is bf16 either way)."""


def test_skipping_adapter_input_casts_keeps_the_loss_and_gradients(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.helpers import disable_input_dtype_casting
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForImageTextToText

    from distill.train.model import LANGUAGE_LINEARS

    def run(skip: bool):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
        targets = r".*\.language_model\..*\.(" + "|".join(LANGUAGE_LINEARS) + ")"
        cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=targets)
        model = get_peft_model(model, cfg)
        assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
        ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(1))
        with disable_input_dtype_casting(model, active=skip), torch.autocast("cpu", dtype=torch.bfloat16):
            casting = [m.cast_input_dtype_enabled for m in model.modules() if isinstance(m, LoraLayer)]
            assert casting == [not skip] * 7 * model.config.text_config.num_hidden_layers
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        grads = [p.grad.float() for n, p in sorted(model.named_parameters()) if "lora_" in n]  # all reached
        return loss.float(), grads

    (loss_a, grads_a), (loss_b, grads_b) = run(False), run(True)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-3, rtol=1e-3)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2)  # bf16 products, float32 adapters
