# Runs a README program (tests/readme_snippets.cmake): given a model that does not exist it must
# report the error and exit 1 (its StatusOr checked, no crash); given the tiny fixture model
# (with a tokenizer beside it) it must chat, and with an image, describe it.
# -DPROGRAM=... -DFIXTURES=tests/fixtures -DWORK=scratch directory
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

execute_process(COMMAND ${PROGRAM} ${WORK}/no-such-model RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "no-such-model")
  message(FATAL_ERROR "missing model: expected exit 1 naming it, got ${rc}\n${out}\n${err}")
endif()

# The tiny E2B checkpoint with the tiny tokenizer beside it, as a downloaded model has.
function(model_dir name weights tokenizer)
  file(MAKE_DIRECTORY ${WORK}/${name})
  file(GLOB files ${weights}/*.json ${weights}/*.safetensors)
  foreach(f ${files})
    get_filename_component(base ${f} NAME)
    file(CREATE_LINK ${f} ${WORK}/${name}/${base} SYMBOLIC)
  endforeach()
  file(CREATE_LINK ${tokenizer}/tokenizer.json ${WORK}/${name}/tokenizer.json SYMBOLIC)
endfunction()

model_dir(text ${FIXTURES}/models/tiny-e2b/gemma4 ${FIXTURES}/chat/tiny_tokenizer)
execute_process(COMMAND ${PROGRAM} ${WORK}/text RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\\[[1-9][0-9]* tokens generated\\]")
  message(FATAL_ERROR "chat on the tiny model: exit ${rc}\n${out}\n${err}")
endif()

model_dir(vision ${FIXTURES}/vision/tiny-e2b-vision ${FIXTURES}/vision/tokenizer)
execute_process(COMMAND ${PROGRAM} ${WORK}/vision ${FIXTURES}/vision/images/up_200x150.png
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "chat with an image on the tiny vision model: exit ${rc}\n${out}\n${err}")
endif()
# And an image the model cannot read is an error, not a crash.
execute_process(COMMAND ${PROGRAM} ${WORK}/vision ${WORK}/missing.png
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "missing.png")
  message(FATAL_ERROR "missing image: expected exit 1 naming it, got ${rc}\n${out}\n${err}")
endif()
file(REMOVE_RECURSE ${WORK})
