# python/python.cmake - build the Python extension in place and register its tests.
# Include from the top-level CMakeLists.txt after shmstore_static is defined:
#     include(python/python.cmake)
# Uses ${PYTHON} (default /usr/bin/python3: the python3 first on PATH may lack numpy).
set(PYTHON "/usr/bin/python3" CACHE FILEPATH "Python interpreter for the extension and its tests")
option(SHMSTORE_PYTHON "build the Python extension (python/)" ON)

if(SHMSTORE_PYTHON)
  set(_py_dir ${CMAKE_CURRENT_LIST_DIR})
  file(GLOB _py_sources CONFIGURE_DEPENDS ${_py_dir}/src/*.c ${_py_dir}/src/*.h)
  set(_py_stamp ${CMAKE_BINARY_DIR}/python_ext.stamp)
  add_custom_command(
    OUTPUT ${_py_stamp}
    COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_LIB_DIR=$<TARGET_FILE_DIR:shmstore_static>
            ${PYTHON} setup.py -q build_ext --inplace --build-temp ${CMAKE_BINARY_DIR}/python-temp
    COMMAND ${CMAKE_COMMAND} -E touch ${_py_stamp}
    DEPENDS shmstore_static ${_py_sources} ${_py_dir}/setup.py
    WORKING_DIRECTORY ${_py_dir}
    COMMENT "Building the Python extension shmstore._shmstore (in place)"
    VERBATIM)
  add_custom_target(python ALL DEPENDS ${_py_stamp})

  if(SHMSTORE_TESTS)
    add_test(NAME python COMMAND ${CMAKE_COMMAND} -E env PYTHON=${PYTHON} sh ${_py_dir}/tests/run.sh)
    set_tests_properties(python PROPERTIES LABELS "python;nosan" TIMEOUT 600)
    # The README's install recipe (venv + pip --no-build-isolation), from a clean copy.
    add_test(NAME python_install COMMAND ${CMAKE_COMMAND} -E env PYTHON=${PYTHON}
             sh ${_py_dir}/tests/test_install.sh $<TARGET_FILE_DIR:shmstore_static>)
    set_tests_properties(python_install PROPERTIES LABELS "python;nosan" TIMEOUT 300)
    # The benchmark runs end to end (every case, the C bench and demo beside it); timing
    # is reported, never asserted.
    add_test(NAME python_bench_smoke COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
             ${PYTHON} ${_py_dir}/bench/bench_python.py --quick --require-c
             --json ${CMAKE_BINARY_DIR}/bench_python_smoke.json)
    set_tests_properties(python_bench_smoke PROPERTIES LABELS "python;nosan;bench" TIMEOUT 300)
    add_test(NAME python_bench_queue_smoke COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
             ${PYTHON} ${_py_dir}/bench/bench_queue.py --quick
             --json ${CMAKE_BINARY_DIR}/bench_queue_smoke.json)
    set_tests_properties(python_bench_queue_smoke PROPERTIES LABELS "python;nosan;bench" TIMEOUT 300)
    add_test(NAME python_bench_ring_smoke COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
             ${PYTHON} ${_py_dir}/bench/bench_ring.py --quick
             --json ${CMAKE_BINARY_DIR}/bench_ring_smoke.json)
    set_tests_properties(python_bench_ring_smoke PROPERTIES LABELS "python;nosan;bench" TIMEOUT 300)
  endif()
endif()
