"""Make the tiny random Llama model the CPU tests serve (no download is possible here).

Run with the engine venv's python (it has torch, transformers and tokenizers):
    python scripts/make_tiny_model.py OUT_DIR
2 layers, hidden size 256, 4 heads (head dim 64: head dim 16 crashes vLLM's CPU attention
kernel), a byte-level BPE tokenizer trained on generated text, and a chat template so the
chat-completion smoke test works. Seeded, so every machine makes the same model. Does
nothing if OUT_DIR already holds a model.
"""

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

VOCAB_SIZE = 2048
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def corpus(lines: int = 4000):
    """Deterministic pseudo-English text to train the tokenizer on."""
    rng = random.Random(0)
    syllables = ["ka", "lo", "mi", "ten", "ra", "vo", "sun", "el", "ix", "no", "pe", "tur"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(600)]
    words += "the a of to and in is it you that he was for on are with as".split()
    for _ in range(lines):
        yield " ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) + "."


def make(out_dir: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        fast.save_pretrained(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)  # atomic: a half-written model is never seen
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(sys.argv[1])
    if (out_dir / "config.json").exists() and (out_dir / "tokenizer.json").exists():
        print(f"tiny model already at {out_dir}")
        return 0
    make(out_dir)
    print(f"tiny model written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
