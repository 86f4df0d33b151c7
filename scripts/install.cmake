# `cmake --install` (and the Debian package, debian/rules): the daemons in sbin, relayctl in
# bin, the generated man pages, relayctl's bash completion. The systemd units and the packaged
# configuration (scripts/systemd/, conf/package/) are installed by debian/holdfast.install,
# since their paths (/lib/systemd/system, /etc/holdfast) are the system's, not the prefix's.
include(GNUInstallDirs)
install(TARGETS relayd fetchd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS relayctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(page ${HF_MAN_PAGES})
  get_filename_component(ext ${page} LAST_EXT)
  string(SUBSTRING ${ext} 1 -1 section)
  install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/scripts/completion/relayctl
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
