@echo off
rem Registers a nightly task (02:30) with the Windows Task Scheduler, as the current user.
rem Adjust the paths; C:\moveshelf holds mvshlf-config.json and its key file.
rem The task's "Last Run Result" is the exit code: 0 fine, 3 a person should look (sessions set aside,
rem conflicts, failed steps), 1 server or key, 2 invalid input, 4 the previous run still holds the lock.
schtasks /Create /TN "Moveshelf import" /SC DAILY /ST 02:30 /F /TR ^
 "cmd /c cd /d C:\moveshelf && C:\moveshelf\venv\Scripts\moveshelf-import.exe apply D:\GaitLab --project org/gait-lab --yes --quiet --on-invalid skip --min-age 2h --log-file C:\moveshelf\logs\nightly.log --report C:\moveshelf\logs\last-run.json"
