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
    add_test(NAME python COMMAND ${CMAKE_COMMAND} -E env PYTHON=${PYTHON} SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
             sh ${_py_dir}/tests/run.sh)
    set_tests_properties(python PROPERTIES LABELS "python;nosan" TIMEOUT 600)
    # The README's install recipe (venv + pip --no-build-isolation), from a clean copy.
    add_test(NAME python_install COMMAND ${CMAKE_COMMAND} -E env PYTHON=${PYTHON}
             sh ${_py_dir}/tests/test_install.sh $<TARGET_FILE_DIR:shmstore_static>)
    set_tests_properties(python_install PROPERTIES LABELS "python;nosan" TIMEOUT 300)
    # The benchmark report end to end in --quick mode: every C case, the Python
    # benchmarks (values, queues; with the C cases and demo beside them) and the charts,
    # each PNG decoded afterwards. Timing is reported, never asserted.
    add_test(NAME bench_report_smoke COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
             ${PYTHON} ${_py_dir}/bench/report.py --quick --verify
             --out ${CMAKE_BINARY_DIR}/bench-report-smoke)
    set_tests_properties(bench_report_smoke PROPERTIES LABELS "python;nosan;bench" TIMEOUT 600)
    # The bridge's benchmark in --quick mode, loopback only (veth is in `make bench`):
    # that every case runs and its checks hold (no entry lost); no timing asserted.
    if(SHMSTORE_HAVE_ZMQ)
      add_test(NAME bench_bridge_smoke COMMAND ${CMAKE_COMMAND} -E env SHMSTORE_BIN=$<TARGET_FILE:shmstore_cli>
               ${PYTHON} ${_py_dir}/bench/bench_bridge.py --quick --no-veth
               --out ${CMAKE_BINARY_DIR}/bench-bridge-smoke.json)
      set_tests_properties(bench_bridge_smoke PROPERTIES LABELS "python;nosan;bench" TIMEOUT 300)
    endif()
  endif()
endif()
