# Debian's librdkit-dev ships headers and shared libraries but no CMake config.
# This module makes one imported target per RDKit library we use: RDKit::<Name>.
find_path(RDKit_INCLUDE_DIR GraphMol/RDKitBase.h PATH_SUFFIXES rdkit)
set(_rdkit_components SmilesParse GraphMol RDGeneral FileParsers Depictor MolDraw2D Fingerprints
    RDGeometryLib DataStructs SubstructMatch ChemTransforms)
set(RDKit_LIBRARIES)
foreach(_c IN LISTS _rdkit_components)
  find_library(RDKit_${_c}_LIBRARY NAMES RDKit${_c})
  if(RDKit_${_c}_LIBRARY AND NOT TARGET RDKit::${_c})
    add_library(RDKit::${_c} UNKNOWN IMPORTED)
    set_target_properties(RDKit::${_c} PROPERTIES
      IMPORTED_LOCATION "${RDKit_${_c}_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${RDKit_INCLUDE_DIR}")
  endif()
  list(APPEND RDKit_LIBRARIES RDKit_${_c}_LIBRARY)
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(RDKit REQUIRED_VARS RDKit_INCLUDE_DIR ${RDKit_LIBRARIES})
