# n3f_drop_missing_include_dirs(): pip-world work-around, a no-op on a full ROS 2 install.
#
# The ROS 2 wheels on PyPI export imported targets `<pkg>::<pkg>__rosidl_generator_py` whose
# INTERFACE_INCLUDE_DIRECTORIES name the wheel builder's paths (/opt/python/cp311-cp311/include/...,
# its numpy), which do not exist on the machine installing the wheels; CMake refuses to generate a
# build that links such a target ("Imported target ... includes non-existent path"). This function
# removes the non-existent entries from those targets in the calling directory only (nothing in the
# installed prefix is patched). The Python and numpy headers that the generated code needs come from
# rosidl_generator_py's own find_package(Python3 ... Development NumPy) of this build. On a full
# install every exported directory exists, so nothing is changed there.
function(n3f_drop_missing_include_dirs)
  if(CMAKE_VERSION VERSION_LESS 3.21)  # IMPORTED_TARGETS directory property; Humble has 3.22
    return()
  endif()
  get_directory_property(_targets IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    if(NOT _target MATCHES "__rosidl_generator_py$")
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")   # keep generator expressions and real paths
        list(APPEND _kept "${_dir}")
      else()
        list(APPEND _dropped "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      message(STATUS "${_target}: dropped non-existent include dirs ${_dropped}")
    endif()
  endforeach()
endfunction()
