/* terminate PID: end the Windows process PID as Task Manager's "End task" or a crashing parent
 * does, with TerminateProcess (no handler of its runs, nothing of its own is cleaned up), and wait
 * until it is gone. Exit 0, or 1 with the Windows error. Built with mingw-w64 by .ci/windows for
 * the Windows scenarios. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: terminate PID\n");
        return 2;
    }
    DWORD pid = (DWORD)strtoul(argv[1], NULL, 10);
    HANDLE process = OpenProcess(PROCESS_TERMINATE | SYNCHRONIZE, FALSE, pid);
    if (process == NULL) {
        fprintf(stderr, "terminate: cannot open process %lu: error %lu\n", pid, GetLastError());
        return 1;
    }
    if (!TerminateProcess(process, 1)) {
        fprintf(stderr, "terminate: cannot end process %lu: error %lu\n", pid, GetLastError());
        return 1;
    }
    if (WaitForSingleObject(process, 10000) != WAIT_OBJECT_0) {
        fprintf(stderr, "terminate: process %lu did not end\n", pid);
        return 1;
    }
    CloseHandle(process);
    return 0;
}
