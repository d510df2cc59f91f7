# README.md's ```cpp blocks, each a complete program: extracted at configure time (README.md is a
# configure dependency, so an edit re-extracts them), compiled against the library with the
# project's warnings, and run by ctest (run_readme_snippet.cmake) on the tiny fixture model, so
# the README shows code that builds, checks its StatusOr and works.
set(GEMMA4_README ${PROJECT_SOURCE_DIR}/README.md)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${GEMMA4_README})
file(READ ${GEMMA4_README} readme_text)
set(snippet_index 0)
while(TRUE)
  string(FIND "${readme_text}" "```cpp\n" snippet_start)
  if(snippet_start EQUAL -1)
    break()
  endif()
  math(EXPR snippet_start "${snippet_start} + 7")
  string(SUBSTRING "${readme_text}" ${snippet_start} -1 readme_text)
  string(FIND "${readme_text}" "```" snippet_end)
  string(SUBSTRING "${readme_text}" 0 ${snippet_end} snippet_code)
  string(SUBSTRING "${readme_text}" ${snippet_end} -1 readme_text)
  set(snippet readme_snippet_${snippet_index})
  # Written only when it changed, so an unrelated README edit rebuilds nothing.
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/${snippet}.cc.new "${snippet_code}")
  configure_file(${CMAKE_CURRENT_BINARY_DIR}/${snippet}.cc.new
                 ${CMAKE_CURRENT_BINARY_DIR}/${snippet}.cc COPYONLY)
  add_executable(${snippet} ${CMAKE_CURRENT_BINARY_DIR}/${snippet}.cc)
  target_compile_options(${snippet} PRIVATE ${GEMMA4_WARNINGS})
  target_link_libraries(${snippet} PRIVATE gemma4_core)
  add_test(NAME ${snippet}
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:${snippet}>
                   -DFIXTURES=${GEMMA4_FIXTURES_DIR}
                   -DWORK=${CMAKE_CURRENT_BINARY_DIR}/${snippet}_run
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/run_readme_snippet.cmake)
  set_tests_properties(${snippet} PROPERTIES TIMEOUT 300)
  math(EXPR snippet_index "${snippet_index} + 1")
endwhile()
if(snippet_index EQUAL 0)
  message(FATAL_ERROR "README.md has no ```cpp block; tests/readme_snippets.cmake expects one")
endif()
