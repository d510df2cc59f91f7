/* Builds against an installed gemma4 (find_package or pkg-config) and loads a model. */
#include <stdio.h>
#include <string.h>

#include <gemma4.h>

int main(int argc, char** argv) {
  gemma4_model* model = NULL;
  gemma4_model_options options;
  gemma4_model_info info;
  if (argc < 3) return 2;
  gemma4_model_options_init(&options);
  options.tokenizer_path = argv[2];
  if (gemma4_model_load(argv[1], &options, &model) != GEMMA4_OK) {
    fprintf(stderr, "load failed: %s\n", gemma4_last_error());
    return 1;
  }
  info.struct_size = sizeof(info);
  gemma4_model_get_info(model, &info);
  printf("gemma4 %s: %d layers, vocab %d\n", gemma4_version_string(), info.num_layers,
         info.vocab_size);
  gemma4_model_free(model);
  return 0;
}
