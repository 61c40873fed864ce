"""Private BERT inference with SecFormer, PUMA and MPCFormer approximations on SecretFlow SPU."""
