// pm2 processes of the subnet: validator, miner and the owner's Data API.
//
//   pm2 start scripts/ecosystem.config.js --only zs-validator   # a validator operator
//   pm2 start scripts/ecosystem.config.js --only zs-miner       # a miner operator
//   pm2 start scripts/ecosystem.config.js --only zs-data-api    # the subnet owner
//   pm2 logs zs-validator; pm2 stop all; pm2 delete all
//
// Every setting comes from the .env file each process reads (see .env.example):
// by default `.env` in the repository; VALIDATOR_ENV_FILE, MINER_ENV_FILE and
// DATA_API_ENV_FILE name other files (one machine running two roles needs two
// files: different wallets, ports and work directories). PYTHON names the
// interpreter (default: the repository's .venv, made by scripts/bootstrap);
// PM2_LOG_DIR the log directory (default: ./logs in the repository).
//
// The processes exit non-zero when they cannot go on. An invalid setting exits
// 2 and an unusable validator state store exits 4: both need the operator (the
// one log line says what to do), so pm2 stops instead of restarting into the
// same line. The validator's watchdog exits 70 when no cycle or weight-set has
// succeeded for too long: pm2 restarts that, and anything else, with a growing
// delay. max_memory_restart restarts a process that grows past its budget.

const path = require("path");

const root = path.resolve(__dirname, "..");
const python = process.env.PYTHON || path.join(root, ".venv", "bin", "python");
const logs = process.env.PM2_LOG_DIR || path.join(root, "logs");
const envFile = (name) => process.env[name] || path.join(root, ".env");

function app(name, module, envVariable, memory) {
  return {
    name,
    script: python,
    args: ["-m", module, "--env-file", envFile(envVariable)],
    interpreter: "none",
    cwd: root,
    autorestart: true,
    stop_exit_codes: [2, 4], // the operator must act: see the process's last log line
    exp_backoff_restart_delay: 1000,
    max_restarts: 50,
    kill_timeout: 15000, // SIGTERM first: miners finish writes, validators stop cleanly
    max_memory_restart: memory,
    out_file: path.join(logs, `${name}.out.log`),
    error_file: path.join(logs, `${name}.err.log`),
    merge_logs: true,
    time: true,
    env: { PYTHONUNBUFFERED: "1" },
  };
}

module.exports = {
  apps: [
    app("zs-validator", "neurons.validator", "VALIDATOR_ENV_FILE", "2G"),
    app("zs-miner", "neurons.miner", "MINER_ENV_FILE", "1G"),
    app("zs-data-api", "data_api", "DATA_API_ENV_FILE", "1G"),
  ],
};
