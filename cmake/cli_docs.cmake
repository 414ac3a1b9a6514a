# Writes the man page (MAN) and the bash completion script (COMPLETION) of the
# built binary BIN from its own --help texts, walking every subcommand, so
# neither can drift from the CLI. Run by CMake at build time; no external tools.

# The help text of `BIN <path...> --help` in out_text; the subcommands and
# options it lists in out_subs and out_opts.
function(af_help path out_text out_subs out_opts)
  execute_process(COMMAND ${BIN} ${path} --help OUTPUT_VARIABLE text RESULT_VARIABLE rc
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${BIN} ${path} --help failed (${rc}): ${err}")
  endif()
  set(raw "${text}")
  string(REPLACE ";" "\\;" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(section "")
  set(subs "")
  set(opts "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^([A-Za-z]+):[ ]*$")
      string(TOUPPER "${CMAKE_MATCH_1}" section)
    elseif(line MATCHES "^[ ]*$")
      # blank lines separate sections in some CLI11 versions
    elseif(section STREQUAL "SUBCOMMANDS" AND line MATCHES "^  ([a-z][a-z0-9-]*)")
      list(APPEND subs ${CMAKE_MATCH_1})
    elseif(section STREQUAL "OPTIONS" AND line MATCHES "^  (-[^ ]+)")
      string(REPLACE "," ";" names "${CMAKE_MATCH_1}")
      foreach(n IN LISTS names)
        if(n MATCHES "^-")
          list(APPEND opts ${n})
        endif()
      endforeach()
    endif()
  endforeach()
  set(${out_text} "${raw}" PARENT_SCOPE)
  set(${out_subs} "${subs}" PARENT_SCOPE)
  set(${out_opts} "${opts}" PARENT_SCOPE)
endfunction()

# roff-safe verbatim text.
function(af_roff text out)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

set(man_commands "")
set(cases "")
set(paths "")
# Breadth-first over the command tree; each entry is a path joined by '/'.
set(queue "-")
while(queue)
  list(POP_FRONT queue key)
  if(key STREQUAL "-")
    set(path "")
    set(name "agent-factory")
    set(case_key "")
  else()
    string(REPLACE "/" ";" path "${key}")
    string(REPLACE "/" " " words "${key}")
    set(name "agent-factory ${words}")
    set(case_key " ${words}")
    list(APPEND paths "\" ${words}\"")
  endif()
  af_help("${path}" text subs opts)
  if(key STREQUAL "-")
    set(top_text "${text}")
  else()
    af_roff("${text}" roff)
    string(APPEND man_commands ".SS \"${name}\"\n.nf\n${roff}.fi\n")
  endif()
  string(REPLACE ";" " " words_here "${subs};${opts}")
  string(STRIP "${words_here}" words_here)
  string(APPEND cases "    \"${case_key}\") words=\"${words_here}\" ;;\n")
  foreach(s IN LISTS subs)
    if(key STREQUAL "-")
      list(APPEND queue "${s}")
    else()
      list(APPEND queue "${key}/${s}")
    endif()
  endforeach()
endwhile()

# The man page: the top-level help as the description, then one section per
# command with its own help.
af_roff("${top_text}" top_roff)
file(WRITE ${MAN} ".\\\" Generated from `agent-factory --help` by cmake/cli_docs.cmake. Do not edit.
.TH AGENT-FACTORY 1 \"\" \"agent-factory ${VERSION}\" \"User Commands\"
.SH NAME
agent-factory \\- multi-agent coding system: turns a feature request into a reviewed git branch
.SH SYNOPSIS
.B agent-factory
[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]
.SH DESCRIPTION
.nf
${top_roff}.fi
.SH COMMANDS
${man_commands}.SH FILES
.TP
.I ./agent-factory.toml
The configuration file, unless \\fB--config\\fR names another.
.TP
.I <data dir>/admin.key
The administrator API key, created by the first \\fBserve\\fR.
.TP
.I /var/lib/agent-factory
The data directory of the system service (agent-factory.service).
.SH SEE ALSO
/usr/share/doc/agent-factory/README.md and docs/ there.
")

# Man pages are installed gzipped (Debian policy).
file(ARCHIVE_CREATE OUTPUT ${MAN}.gz PATHS ${MAN} FORMAT raw COMPRESSION GZip)

# The bash completion: the words each command path accepts; a word that is a
# known command extends the path, anything else (option values, files) does not.
string(REPLACE ";" "|" path_alts "${paths}")
file(WRITE ${COMPLETION} "# bash completion for agent-factory.
# Generated from `agent-factory --help` by cmake/cli_docs.cmake. Do not edit.
_agent_factory() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' i words=''
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \"\$path \${COMP_WORDS[i]}\" in
      ${path_alts}) path=\"\$path \${COMP_WORDS[i]}\" ;;
    esac
  done
  case \"\$path\" in
${cases}  esac
  COMPREPLY=(\$(compgen -W \"\$words\" -- \"\$cur\"))
}
# -o default: file names when no command or option matches (PRP files).
complete -o default -F _agent_factory agent-factory
")
