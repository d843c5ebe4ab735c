# Installs the build in BUILD_DIR into a fresh prefix under WORK_DIR, then
# configures, builds and runs the consumer project in CONSUMER_DIR against
# it. Run with cmake -P.
foreach(var BUILD_DIR CONSUMER_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/build")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
endfunction()

run_step("install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
set(flags "")
if(SANITIZE)
  # The library was built with sanitizers; the program linking it needs them too.
  set(flags "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined")
endif()
run_step("configure" "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${consumer_build}"
         "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${flags})
run_step("build" "${CMAKE_COMMAND}" --build "${consumer_build}")
run_step("run" "${consumer_build}/consumer")
file(REMOVE_RECURSE "${WORK_DIR}")
