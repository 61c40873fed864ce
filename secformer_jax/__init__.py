"""Private BERT inference with SecFormer, PUMA and MPCFormer approximations on SecretFlow SPU."""

from . import threads

threads.configure_from_environment()  # before anything imports spu: libgomp reads its thread counts once
