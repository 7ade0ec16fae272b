# The CLI's shell test, included from tests/CMakeLists.txt (where testing is enabled):
#   include(${CMAKE_SOURCE_DIR}/cli/tests.cmake)
# It runs every verb against a store in a fresh directory under /dev/shm.
add_test(NAME cli_sh COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/test_cli.sh $<TARGET_FILE:shmstore_cli>)
set_tests_properties(cli_sh PROPERTIES TIMEOUT 120 LABELS "cli;nosan")
